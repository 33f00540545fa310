"""Stitch two candidate scorers into one file, chosen by the scan's slice spacing.

Usage::

    python docs/training/stitch_scorers.py THIN.json THICK.json --split-mm 1.5 -o OUT.json \
        --check CACHE_DIR...

The stitching is :mod:`BrainMetSegLib.train.stitch_scorers` (THIN for slice spacing <= split,
THICK above). ``--check`` recomputes every candidate's probability in the cached features of
docs/training/candidate_data.py with the stitched file and with the side that applies, and
writes nothing if any differs by more than 1e-9.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from BrainMetSegLib.candidates import FEATURES
from BrainMetSegLib.scorer import scorer_from_dict
from BrainMetSegLib.train.stitch_scorers import SLICE, StitchError, side_scorers, stitch


def largest_difference(stitched: dict, thin: dict, thick: dict, split_mm: float,
                       caches: list[Path]) -> tuple[float, int]:
    """(largest |p_stitched - p_side|, candidates) over the cached candidates."""
    joint, (low, high) = scorer_from_dict(stitched, "stitched"), side_scorers(thin, thick)
    worst, count = 0.0, 0
    for case in sorted(p for c in caches for p in c.glob("*/candidates.json")):
        x = np.asarray(json.loads(case.read_text())["features"], np.float64).reshape(-1, len(FEATURES))
        if len(x):
            side = np.where(x[:, SLICE] <= split_mm, low.probability(x), high.probability(x))
            worst = max(worst, float(np.abs(joint.probability(x) - side).max()))
            count += len(x)
    return worst, count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("thin", type=Path)
    ap.add_argument("thick", type=Path)
    ap.add_argument("--split-mm", type=float, required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--check", type=Path, nargs="+", required=True)
    args = ap.parse_args(argv)
    thin, thick = (json.loads(p.read_text()) for p in (args.thin, args.thick))
    try:
        stitched = stitch(thin, thick, args.split_mm)
    except StitchError as exc:
        sys.exit(f"stitch_scorers: {exc}")
    worst, count = largest_difference(stitched, thin, thick, args.split_mm, args.check)
    if worst > 1e-9 or not count:
        sys.exit(f"stitch_scorers: the stitched scorer differs from its sides by {worst:.3g} on {count} candidates")
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(stitched))
    tmp.replace(args.output)
    print(f"checked {count} candidates (largest difference {worst:.2e}); wrote {args.output}, "
          f"{len(stitched['model']['trees'])} trees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
