"""``brainmetseg models import nnunet|monai-bundle FOLDER -o PKG``: a model trained elsewhere
becomes a BrainMetSeg model package (safetensors + card); see :mod:`BrainMetSegLib.importers`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..options import Normalisation


def _sequences(text: str) -> tuple[str, ...]:
    return tuple(s.strip().lower() for s in text.split(",") if s.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainmetseg models import",
        description="Import a trained nnU-Net v2 model or a MONAI bundle as a model package.")
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", help="package folder to write (default: the user model "
                        "folder, where `brainmetseg models` and the model menus find it)")
    common.add_argument("--name", help="model name in the card (default from the source)")
    common.add_argument("--channels", type=_sequences, metavar="SEQ,SEQ",
                        help="sequences in the network's channel order, from t1ce,t1,t2,flair "
                             "(default: from the source's channel names)")
    common.add_argument("--overwrite", action="store_true", help="replace an existing package")

    n = sub.add_parser("nnunet", parents=[common], help="nnU-Net v2 results folder "
                       "(<Trainer>__<Plans>__<configuration> with dataset.json, plans.json, fold_*)")
    n.add_argument("folder", metavar="RESULTS_FOLDER")
    n.add_argument("--fold", nargs="+", dest="folds", metavar="FOLD",
                   help="folds to import (e.g. 0 1 2 3 4 or all); default: every fold_* present. "
                        "Several folds make an ensemble (logits averaged).")
    n.add_argument("--checkpoint", choices=("final", "best"), default="final")
    n.add_argument("--label", help="dataset.json label that means metastasis (default: the only "
                   "foreground label, or the enhancing tumour)")
    n.add_argument("--orientation", default="RAS",
                   help="voxel orientation of the training images (NIfTI: usually RAS; default RAS)")
    n.add_argument("--no-mirroring", dest="mirroring", action="store_false",
                   help="no test-time mirroring (nnU-Net mirrors by default: 8 passes per window)")

    m = sub.add_parser("monai-bundle", parents=[common], help="MONAI bundle folder "
                       "(configs/inference.json, models/model.pt)")
    m.add_argument("folder", metavar="BUNDLE_FOLDER")
    m.add_argument("--output-channel", type=int, help="network output channel meaning metastasis")
    m.add_argument("--activation", choices=("sigmoid", "softmax"),
                   help="output activation (default: from the bundle's postprocessing)")
    m.add_argument("--spacing", type=_floats, metavar="X,Y,Z", help="model spacing in mm")
    m.add_argument("--patch", type=_floats, metavar="X,Y,Z", help="sliding-window size in voxels")
    m.add_argument("--normalisation", choices=tuple(n.value for n in (Normalisation.ZSCORE_NONZERO,
                                                                      Normalisation.ZSCORE_BRAIN, Normalisation.NONE)),
                   help="intensity normalisation (default: from the bundle's preprocessing)")
    m.add_argument("--orientation", default="RAS",
                   help="voxel orientation the network was trained in (MONAI bundles usually "
                        "load NIfTI as RAS; default RAS)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.kind == "nnunet":
        from ..importers.nnunet import NnUNetImport, default_output, import_nnunet

        output = args.output or default_output(args.name or _nnunet_default_name(args.folder))
        package = import_nnunet(NnUNetImport(
            results_folder=args.folder, output=output, folds=tuple(args.folds) if args.folds else None,
            checkpoint=args.checkpoint, label=args.label, channels=args.channels,
            orientation=args.orientation, mirroring=args.mirroring, name=args.name,
            overwrite=args.overwrite))
    else:
        from ..importers.monai_bundle import BundleImport, import_bundle
        from ..importers.nnunet import default_output

        output = args.output or default_output(args.name or Path(args.folder).resolve().name)
        package = import_bundle(BundleImport(
            bundle_folder=args.folder, output=output, name=args.name, channels=args.channels,
            output_channel=args.output_channel, activation=args.activation,
            spacing_mm=args.spacing, patch_size=args.patch, normalisation=args.normalisation,
            orientation=args.orientation, overwrite=args.overwrite))
    card = package.card
    if "assumed" in str(card.provenance.get("orientation", "")):
        print(f"note: {card.provenance['orientation']}", file=sys.stderr)
    members = len(card.ensemble) or 1
    print(f"imported {card.name} ({card.provenance.get('source')}, {members} weight file(s), "
          f"inputs {'+'.join(card.network_io.get('input_channels', card.input_sequences))}, "
          f"spacing {card.spacing_mm} mm, patch {card.patch_size}) -> {package.folder}")
    return 0


def _nnunet_default_name(folder: str) -> str:
    path = Path(folder).resolve()
    if not path.is_dir():
        raise InputError(f"{folder}: not a folder.")
    return f"{path.parent.name}-{path.name.split('__')[-1]}"
