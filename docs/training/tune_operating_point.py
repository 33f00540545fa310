"""Choose a model's threshold and minimum lesion volume on a tuning set of synthetic cases.

Usage (how the demo model's operating point was chosen; see demo_model.md)::

    brainmetseg synth -n 20 --start 60 --seed 1000 -o TUNE     # never trained on, not the test set
    python docs/training/evaluate_demo_model.py TUNE -o TUNESEG --model MODEL
    python docs/training/tune_operating_point.py TUNE TUNESEG -o operating_point.json --max-fp 0.5

Every (threshold, minimum volume) pair of the grid is applied to the saved probability maps
on the input grid exactly as ``brainmetseg segment`` applies them (``operating_point.lesion_labels``);
lesions are matched with the generator's lesion mask by the library's one matching (any
overlap) and sized by its one measure (longest surface diameter), as ``brainmetseg evaluate``.
Without ``--max-fp`` the chosen pair has the best lesion-wise F1
over all lesions (ties: the higher threshold, then the smaller volume), the rule training
uses on its validation split; with ``--max-fp F`` it has the highest sensitivity among pairs
with at most F false positives per case (ties: best F1): for lesions >= 5 mm
(``--objective ge5mm``, how 1.1.0 was tuned) or for all lesions (``--objective all``, 2.0.0,
which is meant to find the small ones too).
Writes the whole grid and the choice as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import SimpleITK as sitk
from evaluate_demo_model import read_ground_truth, sensitivity_ge5mm  # same folder

from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels
from BrainMetSegLib.train.metrics import case_result, summarise

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MIN_VOLUMES_MM3 = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0)


def load_cases(synth: Path, seg: Path) -> list[dict]:
    cases = []
    for image in sorted((synth / "imagesTr").glob("*_0000.nii.gz")):
        cid = image.name[: -len("_0000.nii.gz")]
        gt = read_ground_truth(synth, cid)
        cases.append({"id": cid, "gt": sitk.GetArrayFromImage(gt), "spacing": gt.GetSpacing(),
                      "direction": gt.GetDirection(),
                      "prob": sitk.ReadImage(str(seg / cid / "probability.nii.gz"))})
    return cases


def score(cases: list[dict], threshold: float, min_volume: float) -> dict:
    results = []
    for c in cases:
        pred = sitk.GetArrayFromImage(lesion_labels(c["prob"], OperatingPoint(threshold, min_volume))) > 0
        results.append(case_result(c["gt"], pred, c["spacing"], c["direction"]))
    summary = summarise(results)
    summary["sensitivity_>=5mm"], _ = sensitivity_ge5mm(results)
    return {"threshold": threshold, "min_volume_mm3": min_volume,
            **{k: summary[k] for k in ("sensitivity", "sensitivity_>=5mm", "fp_per_case", "lesion_f1")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("synth", type=Path, help="synthetic set (brainmetseg synth output)")
    p.add_argument("seg", type=Path, help="segmentations of it (one folder per case with probability.nii.gz)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--max-fp", type=float, default=None, metavar="F",
                   help="choose the best sensitivity with at most F FP per case")
    p.add_argument("--jobs", type=int, default=1, help="grid points scored in parallel processes (fork)")
    p.add_argument("--objective", choices=("ge5mm", "all"), default="ge5mm",
                   help="with --max-fp: the sensitivity to maximise, lesions >= 5 mm or all lesions")
    args = p.parse_args()
    cases = load_cases(args.synth, args.seg)
    points = [(t, v) for t in THRESHOLDS for v in MIN_VOLUMES_MM3]
    if args.jobs > 1:  # forked workers share the loaded maps copy-on-write
        import multiprocessing
        from functools import partial

        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            grid = pool.starmap(partial(score, cases), points)
    else:
        grid = [score(cases, t, v) for t, v in points]
    best_f1 = max(grid, key=lambda g: (round(g["lesion_f1"], 6), g["threshold"], -g["min_volume_mm3"]))
    allowed = [g for g in grid if args.max_fp is None or g["fp_per_case"] <= args.max_fp]
    if not allowed:
        print(f"no pair has at most {args.max_fp} FP per case", file=sys.stderr)
        return 1
    best = best_f1 if args.max_fp is None else max(
        allowed, key=lambda g: (g["sensitivity_>=5mm" if args.objective == "ge5mm" else "sensitivity"],
                                round(g["lesion_f1"], 6)))
    for g in grid:
        print("t {threshold:.2f} v {min_volume_mm3:4.0f}: sens {sensitivity:.3f} >=5mm {sensitivity_>=5mm:.3f} "
              "FP {fp_per_case:.2f} F1 {lesion_f1:.3f}".format(**g))
    print("chosen:", json.dumps(best))
    args.output.write_text(json.dumps({"cases": [c["id"] for c in cases], "max_fp": args.max_fp,
                                       "objective": args.objective, "chosen": best,
                                       "best_f1": best_f1, "grid": grid}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
