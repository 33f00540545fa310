"""Choose a model's outline threshold on a tuning set: lesions drawn at their true size.

Usage (how the demo model's outline threshold was chosen; see demo_model.md)::

    python docs/training/tune_outline.py TUNE_A SEG_A [TUNE_B SEG_B ...] --threshold 0.95 \
        --min-volume 10 -o outline.json

Detection is fixed (the card's detection threshold and minimum volume, chosen by the
false-positive rule with ``tune_operating_point.py``); each outline threshold of the grid is
applied with the library's one rule (:func:`BrainMetSegLib.operating_point.lesion_labels_array`)
to the saved probability maps, and every detected ground-truth lesion (any-overlap matching,
:func:`BrainMetSegLib.evaluate.lesionwise.match_lesions`) is compared with what was drawn for
it (:mod:`BrainMetSegLib.evaluate.size_accuracy`). The rule, fixed before the run: the outline
whose median predicted/true volume is closest to 1, among those within 0.02 of the closest the
one with the best median lesion Dice. Detections and false positives are printed for each
outline: they change only where an outline reaches a lesion its detection did not touch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib.evaluate.lesionwise import _pad_box, match_lesions
from BrainMetSegLib.evaluate.size_accuracy import size_accuracy
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels_array

OUTLINES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
TIE = 0.02


def load_cases(pairs: list[tuple[Path, Path]], lowest: float) -> list[dict]:
    """Ground truth and probability of every case, cropped to where any outline can reach."""
    cases = []
    for synth, seg in pairs:
        for image in sorted((synth / "imagesTr").glob("*_0000.nii.gz")):
            cid = image.name[: -len("_0000.nii.gz")]
            gt_image = sitk.ReadImage(str(synth / "instancesTr" / f"{cid}.nii.gz"))
            gt = sitk.GetArrayFromImage(gt_image) > 0
            prob = sitk.GetArrayFromImage(sitk.ReadImage(str(seg / cid / "probability.nii.gz")))
            box = ndimage.find_objects((gt | (prob > lowest)).astype(np.uint8))
            if box:
                box = _pad_box(box[0], gt.shape, 3)
                gt, prob = gt[box], prob[box]
            cases.append({"id": f"{synth.name}/{cid}", "gt": gt, "prob": prob,
                          "spacing": gt_image.GetSpacing(), "direction": gt_image.GetDirection()})
    return cases


def score(cases: list[dict], point: OperatingPoint) -> dict:
    lesions, fp = [], 0
    for c in cases:
        pred = lesion_labels_array(c["prob"], c["spacing"], point) > 0
        match = match_lesions(c["gt"], pred, c["spacing"], "overlap", c["direction"])
        lesions += match.gt
        fp += sum(not p.true_positive for p in match.pred)
    rows = {r["size_bin"]: r for r in size_accuracy(lesions)}
    dice = [g.dice for g in lesions if g.detected]
    return {"outline_threshold": point.outline, "detected": sum(g.detected for g in lesions),
            "lesions": len(lesions), "fp_per_case": fp / len(cases),
            "median_lesion_dice": float(np.median(dice)) if dice else float("nan"),
            "size_accuracy": list(rows.values())}


def choose(grid: list[dict]) -> dict:
    gap = [abs(g["size_accuracy"][-1]["volume_ratio_median"] - 1) for g in grid]
    near = [g for g, d in zip(grid, gap, strict=True) if d <= min(gap) + TIE]
    return max(near, key=lambda g: g["median_lesion_dice"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", type=Path, nargs="+", help="synth folder, segmentation folder, ...")
    p.add_argument("--threshold", type=float, required=True, help="detection threshold (fixed)")
    p.add_argument("--min-volume", type=float, default=0.0, help="minimum lesion volume mm^3 (fixed)")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args()
    if len(args.pairs) % 2:
        p.error("give synth and segmentation folders in pairs")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    outlines = [o for o in OUTLINES if o <= args.threshold]
    cases = load_cases(pairs, min(outlines))
    grid = []
    for outline in outlines:
        g = score(cases, OperatingPoint(args.threshold, args.min_volume, outline))
        a = g["size_accuracy"][-1]
        print(f"outline {outline:.2f}: detected {g['detected']}/{g['lesions']}, FP/case {g['fp_per_case']:.2f}, "
              f"volume ratio {a['volume_ratio_median']:.2f} ({a['volume_ratio_q1']:.2f}-{a['volume_ratio_q3']:.2f}), "
              f"lesion Dice {g['median_lesion_dice']:.3f}, |diam err| {a['abs_diameter_error_mm_median']:.2f} mm",
              flush=True)
        grid.append(g)
    best = choose(grid)
    print("chosen outline threshold:", best["outline_threshold"])
    args.output.write_text(json.dumps({"cases": [c["id"] for c in cases], "threshold": args.threshold,
                                       "min_volume_mm3": args.min_volume, "rule": __doc__.split("The rule")[1]
                                       .split(". Detections")[0].split(" Detections")[0].strip(),
                                       "chosen": best, "grid": grid},
                                      indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
