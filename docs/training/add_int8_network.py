"""Write a copy of a model package with an int8 network for each set of its weights.

Usage::

    python docs/training/add_int8_network.py PKG -o NEWPKG [--seed 1000] [-n 4] [--variants main]
        [--auto main] [--version 2.6.0] [--overwrite]

PKG: the package (folder or registry name). Each set of weights (the main ones; the thick-slice
ones where the card has them) is exported to OpenVINO and quantised to int8 with NNCF, calibrated
on N phantoms of ``brainmetseg synth --seed SEED`` (1 mm for the main weights; re-acquired as 3, 5
and 7 mm slices for the thick-slice ones), preprocessed as ``segment`` does. NEWPKG gets the IR
files and the card field ``int8_network`` (their sha256, the weights each was made from, how it was
made), written only after it loads and each int8 network compiles. Needs ``pip install nncf``
(the ``quantise`` extra). The library function is
:func:`BrainMetSegLib.train.quantise.add_int8_networks`.
"""

from __future__ import annotations

import argparse
import sys

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.int8_network import variants
from BrainMetSegLib.train.quantise import add_int8_networks


def _names(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.split(",") if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="the model package (folder or registry name)")
    parser.add_argument("-o", "--output", required=True, help="the new package folder")
    parser.add_argument("--seed", type=int, default=1000, help="calibration phantoms' seed (default 1000: "
                        "the bundled demo's training seed)")
    parser.add_argument("-n", type=int, default=4, help="calibration phantoms per set of weights (default 4)")
    parser.add_argument("--variants", default=None, help="comma-separated sets of weights to quantise (main, "
                        "thick-slice; default: all); scans of the others run fp32")
    parser.add_argument("--auto", default="", help="comma-separated sets of weights (main, thick-slice) that "
                        "--precision auto may run in int8: only those measured to agree with fp32 (default: none; "
                        "int8 then runs only when asked)")
    parser.add_argument("--version", default=None, help="the new card's version (default: PKG's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n: at least one calibration phantom")
    try:
        only = None if args.variants is None else _names(args.variants)
        package = add_int8_networks(args.package, args.output, args.seed, args.n, args.version, args.overwrite,
                                    auto=_names(args.auto), only=only)
    except (BrainMetSegError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    field = package.card.int8_network
    for variant in variants(field):
        print(f"{package.folder}: {variant} int8 network {field[variant]['xml']} (sha256 of .bin "
              f"{field[variant]['sha256_bin'][:12]}...)")
    print(f"made in {field['made']['seconds']} s: {field['made']['calibration']}; --precision auto runs "
          f"int8 for: {', '.join(field['auto']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
