"""``brainmetseg models``: list known model packages and their cards; download registry models."""

from __future__ import annotations

import json

from ..errors import ModelError
from ..models import REGISTRY_FILE, load_package, read_registry


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show this model's full card (name or folder)")
    parser.add_argument("--download", metavar="NAME",
                        help="download registry model NAME into the cache (sha256-checked)")
    parser.add_argument("--overwrite", action="store_true", help="with --download: fetch again")


def run(args) -> int:
    if args.download:
        from ..download import download_model

        package = download_model(args.download, overwrite=args.overwrite)
        print(f"{package.card.name} {package.card.version}: {package.folder}")
        return 0
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
