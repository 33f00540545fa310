"""Phantoms segmented as ``segment`` does with deepbet forced onto a GRID^3 cube: lesions found,
false, false outside the brain, per case (JSON lines) and in total per folder.

    brainmetseg synth -n 10 --seed 10400 --slice-thickness 5 --in-plane 0.5 -o F5
    brainmetseg synth -n 10 --seed 10500 --slice-thickness 7 --in-plane 0.5 -o F7
    python benchmarks/thick_deepbet_grid_fresh.py 224 F5 F7 > rows224.jsonl
    python benchmarks/thick_deepbet_grid_fresh.py 256 F5 F7 > rows256.jsonl

Made to check deepbet's 256^3 cube for thick scans (docs/robustness.md) on phantoms made after
the rule was written. Counts as the robustness benchmark's ``score`` makes them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))

KEYS = ("gt_lesions", "detected", "fp", "fp_outside_brain")


def main() -> None:
    from robustness import score
    from with_deepbet_grid import _forced

    import BrainMetSegLib.skullstrip as skullstrip
    from BrainMetSegLib.geometry import Grid
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        raise SystemExit(__doc__)
    grid = int(sys.argv[1])
    skullstrip.deepbet_mask = _forced(skullstrip.deepbet_mask, grid)
    segmenter = Segmenter(SegmentConfig())
    total: dict[str, dict[str, int]] = {}
    for folder in sys.argv[2:]:
        for image in sorted(Path(folder, "imagesTr").glob("*_0000.nii.gz")):
            cid = image.name.replace("_0000.nii.gz", "")
            truth, brain = (sitk.ReadImage(str(Path(folder, sub, f"{cid}.nii.gz")))
                            for sub in ("instancesTr", "brainmasksTr"))
            result = segmenter.run(str(image))
            counts = score(result.labels, truth, brain, Grid.of(sitk.ReadImage(str(image))))
            print(json.dumps({"folder": folder, "case": cid, "grid": grid, **{k: counts[k] for k in KEYS}}),
                  flush=True)
            for k in KEYS:
                total.setdefault(folder, dict.fromkeys(KEYS, 0))[k] += counts[k]
    print(json.dumps({"total": total, "grid": grid}))


if __name__ == "__main__":
    main()
