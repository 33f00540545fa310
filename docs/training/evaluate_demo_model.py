"""Held-out evaluation of a model package on a synthetic set written by ``brainmetseg synth``.

Usage (the figures in docs/training/demo_model.md came from these commands)::

    brainmetseg synth -n 30 --seed 3000 -o HELDOUT
    python docs/training/evaluate_demo_model.py HELDOUT -o SEGDIR [--model brainmetseg-demo] [--brain-mask deepbet]

All cases go through one ``brainmetseg segment --manifest`` run (the batch mode a researcher
uses); the time per case is the sum of the pipeline stages in each case's run.json
(reading, preprocessing with brain extraction, inference, post-processing, writing not
included) and the run's wall time divided by the number of cases (imports and model
loading included). The
predicted lesion map is compared on the input grid with the generator's lesion mask
(``instancesTr``) by the library's one lesion matching (any overlap, as ``brainmetseg evaluate
--match overlap``); lesion size is the library's one measure, the longest surface diameter of
the ground-truth lesion (:func:`BrainMetSegLib.lesions.component_diameters_mm`). Writes
SEGDIR/heldout_metrics.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.train.metrics import case_result, summarise


def read_ground_truth(synth: Path, cid: str) -> sitk.Image:
    """The generator's lesion instance map of a case (its geometry is the image's)."""
    return sitk.ReadImage(str(synth / "instancesTr" / f"{cid}.nii.gz"))


def sensitivity_ge5mm(results: list[dict]) -> tuple[float, int]:
    """Pooled sensitivity and count of lesions whose measured longest diameter is >= 5 mm."""
    ge5 = [les for r in results for les in r["lesions"] if les["longest_diameter_mm"] >= 5]
    return (float(np.mean([les["detected"] for les in ge5])) if ge5 else float("nan")), len(ge5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("heldout", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--model", default="brainmetseg-demo")
    p.add_argument("--brain-mask", default="deepbet", help="deepbet (as a user runs it) or none")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    cases = sorted(f.name[: -len("_0000.nii.gz")] for f in (args.heldout / "imagesTr").glob("*_0000.nii.gz"))
    args.output.mkdir(parents=True, exist_ok=True)
    manifest = args.output / "manifest.csv"
    manifest.write_text("case_id,t1ce\n" + "".join(
        f"{cid},{(args.heldout / 'imagesTr' / f'{cid}_0000.nii.gz').resolve()}\n" for cid in cases))
    wall = None
    if not all((args.output / cid / "lesion_labels.nii.gz").is_file() for cid in cases):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "BrainMetSegLib", "segment", "--manifest", str(manifest),
                        "-o", str(args.output), "--model", args.model, "--brain-mask", args.brain_mask,
                        "--device", args.device, "--progress", "none", "--overwrite"], check=True)
        wall = time.perf_counter() - t0
    results, seconds = [], []
    for cid in cases:
        out = args.output / cid
        timings = json.loads((out / "run.json").read_text())["timings_s"]
        seconds.append(sum(v for k, v in timings.items() if k != "load_model"))
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "lesion_labels.nii.gz"))) > 0
        gt = read_ground_truth(args.heldout, cid)
        r = case_result(sitk.GetArrayFromImage(gt), pred, gt.GetSpacing(), gt.GetDirection())
        r["case"] = cid
        results.append(r)
        print(f"{cid}: {sum(les['detected'] for les in r['lesions'])}/{len(r['lesions'])} lesions, "
              f"FP {r['fp']}, Dice {r['dice']:.3f}", flush=True)
    summary = summarise(results)
    lesions = [les for r in results for les in r["lesions"]]
    summary["sensitivity_>=5mm"], summary["lesions_>=5mm"] = sensitivity_ge5mm(results)
    summary["median_lesion_dice_all_gt"] = float(np.median([les["dice"] for les in lesions])) if lesions else 0.0
    summary["seconds_per_case_median"] = float(np.median(seconds))
    summary["seconds_per_case_mean"] = float(np.mean(seconds))
    if wall is not None:
        summary["wall_seconds_per_case_batch"] = wall / len(cases)
    summary.update(model=args.model, brain_mask=args.brain_mask, heldout=str(args.heldout))
    (args.output / "heldout_metrics.json").write_text(json.dumps({"summary": summary, "cases": results},
                                                                 indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
