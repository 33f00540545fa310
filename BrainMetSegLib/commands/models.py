"""``brainmetseg models``: list known model packages and their cards; download registry models;
``brainmetseg models import ...``: import a model trained with nnU-Net v2 or packaged as a MONAI bundle."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError, ModelError
from ..models import REGISTRY_FILE, load_package, read_registry


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show this model's full card (name or folder); "
                        "or 'import' (see: brainmetseg models import --help)")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--download", metavar="NAME",
                        help="download registry model NAME into the cache (sha256-checked)")
    parser.add_argument("--overwrite", action="store_true", help="with --download: fetch again")


def origin(entry: dict, card) -> str:
    """Where a package came from, for the listing."""
    source = card.provenance.get("source") if card is not None else None
    where = "user folder" if entry.get("source") == "user" else (
        "bundled" if "path" in entry else "download")
    return f"imported from {source} ({where})" if source else where


def run(args) -> int:
    if args.name == "import":
        from .models_import import main

        return main(args.rest + (["--overwrite"] if args.overwrite else []))
    if args.rest:
        raise InputError(f"unexpected arguments: {' '.join(args.rest)}")
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
            thick = card.thick_slice_weights
            print(f"{entry['name']:24s} {card.version:14s} {card.architecture:14s} {state:9s} "
                  f"inputs={'+'.join(card.input_sequences)} spacing={card.spacing_mm} "
                  f"source={origin(entry, card)}"
                  + (f" weights={card.weights}, {thick['weights']} (slices > {thick['above_slice_spacing_mm']:g} mm)"
                     if thick else "") + (" int8=yes" if card.int8_network else ""))
        except ModelError as exc:
            print(f"{entry['name']:24s} unavailable: {exc}")
    return 0
