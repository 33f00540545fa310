"""Write a copy of a model package with a second set of weights for thick-slice scans.

Usage::

    python docs/training/add_thick_weights.py PKG THICK -o NEWPKG [--split-mm 1.5]
        [--version 2.5.0] [--name model_thick.safetensors] [--overwrite]

PKG: the package (folder or registry name); THICK: the fine-tuned weights, a ``.safetensors``
file or the package folder ``brainmetseg train`` wrote (its card must describe the same
network). Scans whose slice spacing is above the split run THICK, the others PKG's weights
unchanged. ``--split-mm`` defaults to the split PKG's stitched candidate scorer records (a
different one is refused). The tensors are stored in the dtype of PKG's (fp16 for the bundled
demo), the card gets ``thick_slice_weights`` with their sha256, and NEWPKG is written only after
it loads and both networks load from it. The library function is
:func:`BrainMetSegLib.train.thick_package.add_thick_weights`.
"""

from __future__ import annotations

import argparse
import sys

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.train.thick_package import THICK_NAME, add_thick_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="the model package (folder or registry name)")
    parser.add_argument("thick", help="thick-slice weights: a .safetensors file or a model package folder")
    parser.add_argument("-o", "--output", required=True, help="the new package folder")
    parser.add_argument("--split-mm", type=float, default=None,
                        help="scans of slice spacing above this (mm) run THICK (default: the stitched "
                             "candidate scorer's split)")
    parser.add_argument("--version", default=None, help="the new card's version (default: PKG's)")
    parser.add_argument("--name", default=THICK_NAME, help=f"file name of the thick weights (default {THICK_NAME})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    try:
        package = add_thick_weights(args.package, args.thick, args.output, args.split_mm, args.version,
                                    args.name, args.overwrite)
    except (BrainMetSegError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    entry = package.card.thick_slice_weights
    print(f"{package.folder}: {package.card.name} {package.card.version}; {entry['weights']} "
          f"(sha256 {entry['sha256'][:12]}...) for slice spacing > {entry['above_slice_spacing_mm']:g} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
