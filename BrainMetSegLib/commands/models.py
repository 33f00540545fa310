"""``brainmetseg models``: list known model packages and their cards."""

from __future__ import annotations

import json

from ..errors import ModelError
from ..models import REGISTRY_FILE, load_package, read_registry


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show this model's full card (name or folder)")


def run(args) -> int:
    if args.name:
        package = load_package(args.name)
        print(json.dumps({**package.card.to_dict(), "folder": str(package.folder)}, indent=2))
        return 0
    entries = read_registry()
    if not entries:
        print(f"no models registered in {REGISTRY_FILE}")
        return 0
    for entry in entries:
        try:
            card = load_package(entry["name"]).card
            state = "trained" if card.trained else "UNTRAINED"
            print(f"{card.name:24s} {card.version:8s} {card.architecture:14s} {state:9s} "
                  f"inputs={'+'.join(card.input_sequences)} spacing={card.spacing_mm}")
        except ModelError as exc:
            print(f"{entry['name']:24s} unavailable: {exc}")
    return 0
