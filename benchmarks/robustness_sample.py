"""The bundled sample re-acquired as clinics write it (docs/robustness.md, "The bundled sample
re-acquired"): the same head resampled oblique 25/15 degrees, at 0.5 x 0.5 x 7 mm and at
0.5 x 0.5 x 5 mm in axial, coronal and sagittal slices, segmented with the default model and
scored against the sample's ground truth.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/robustness_sample.py -o /tmp/sample_rob \
        --json benchmarks/results/robustness_sample_demo2.2.0.json

Writes OUT/<scan>.nii.gz (the re-acquired scan) and OUT/<scan>.labels.nii.gz (its lesions).

Scans: :func:`BrainMetSegLib.synth.reacquire` of ``Resources/Sample/sample_ce_t1.nii.gz``
(``Reacquisition(tilt_deg=(25, 15))``, ``Reacquisition(slice_thickness_mm=7,
in_plane_mm=0.5)`` and the :data:`SCANS` below), written to OUT and run through ``Segmenter.run`` (model card defaults).
Scoring: :func:`robustness.score` (lesion labels mapped back onto the sample's grid, nearest,
each keeping its id; any overlap with a truth lesion). "Outside the brain": most of a false
lesion outside deepbet's (undilated) mask of the upright original. Brain mask (mL): deepbet's
undilated mask of each scan as preprocessing makes it (one extra preprocessing run per scan).
Prints one JSON line per scan; each false lesion with its volume (mm^3, on the original grid),
lesion probability (candidate stage) and share outside the original's brain mask.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import score  # noqa: E402

from BrainMetSegLib.geometry import Grid  # noqa: E402
from BrainMetSegLib.synth.reacquire import Reacquisition, reacquire  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "Resources" / "Sample" / "sample_ce_t1.nii.gz"
TRUTH = ROOT / "Resources" / "Sample" / "sample_ground_truth_instances.nii.gz"
SCANS = {
    "original": None,
    "oblique25x15": Reacquisition(tilt_deg=(25.0, 15.0)),
    "slice7mm": Reacquisition(slice_thickness_mm=7.0, in_plane_mm=0.5),
    "slice5mm": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5),
    "slice5mm-coronal": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5, slice_plane="coronal"),
    "slice5mm-sagittal": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5, slice_plane="sagittal"),
}


def undilated_brain(segmenter, image: sitk.Image) -> tuple[sitk.Image, float]:
    """deepbet's undilated brain mask of ``image`` as the pipeline makes it (on the image's
    grid, uint8) and its volume (mL, on the model grid)."""
    from BrainMetSegLib.preprocess import preprocess

    config = dataclasses.replace(segmenter.preprocess_config, mask_dilation_mm=0.0)
    pre = preprocess([image], config)
    return pre.geometry.to_input(pre.brain.astype(np.uint8), linear=False), pre.brain_ml


def false_lesions(result, truth: sitk.Image, brain: sitk.Image) -> list[dict]:
    """Each reported lesion that overlaps no truth lesion (on the original grid): its id,
    volume (mm^3, original grid), lesion probability and share outside ``brain``."""
    pred = sitk.GetArrayFromImage(sitk.Resample(result.labels, truth, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0, sitk.sitkUInt32))
    gt = sitk.GetArrayViewFromImage(truth) > 0
    inside = sitk.GetArrayViewFromImage(brain) > 0
    voxel = float(np.prod(truth.GetSpacing()))
    rows = []
    for row in result.table:
        sel = pred == row["lesion_id"]
        if sel.any() and gt[sel].any():
            continue
        rows.append({"id": row["lesion_id"], "volume_mm3": round(float(sel.sum()) * voxel, 1),
                     "lesion_probability": round(float(row.get("lesion_probability", float("nan"))), 3),
                     "max_probability": round(float(row["max_probability"]), 3),
                     "outside_brain": round(float(1 - inside[sel].mean()), 2) if sel.any() else None,
                     "centroid_ras": [round(row[k], 1) for k in ("centroid_r", "centroid_a", "centroid_s")]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True, help="work folder (the re-acquired scans)")
    p.add_argument("--model", default="brainmetseg-demo")
    p.add_argument("--scans", default=",".join(SCANS), help="comma-separated, of: " + ", ".join(SCANS))
    p.add_argument("--card-rule", action="store_true",
                   help="the card's detection rule instead of the candidate stage (demo: 2.1.0's rule)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--mirror", default="none", choices=("none", "lr", "all"),
                   help="test-time mirroring (segment --mirror), to measure what it changes")
    args = p.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(SegmentConfig(model=args.model, mirror=args.mirror))
    if args.card_rule:  # an explicit threshold and minimum volume switch the candidate stage off
        card = segmenter.package.card
        segmenter = Segmenter(SegmentConfig(model=args.model, threshold=card.threshold,
                                            min_volume_mm3=card.min_lesion_volume_mm3))
    image, truth = sitk.ReadImage(str(SAMPLE)), sitk.ReadImage(str(TRUTH))
    brain, original_ml = undilated_brain(segmenter, image)  # the upright original's: "outside the brain"
    rows = []
    for name in [s.strip() for s in args.scans.split(",") if s.strip()]:
        spec = SCANS[name]
        scan = image if spec is None else reacquire({"image": image}, spec)["image"]
        path = out / f"{name}.nii.gz"
        sitk.WriteImage(scan, str(path))
        result = segmenter.run(str(path))
        sitk.WriteImage(result.labels, str(out / f"{name}.labels.nii.gz"))  # to look at the false ones
        s = score(result.labels, truth, brain, Grid.of(scan))
        row = {"scan": name, "spacing_mm": [round(v, 3) for v in scan.GetSpacing()],
               "size": list(scan.GetSize()), "reported": result.n_lesions,
               "found": s["detected"], "truth": s["gt_lesions"], "false": s["fp"],
               "largest_false_mm3": max(s["fp_volumes_mm3"], default=0.0),
               "false_outside_brain": s["fp_outside_brain"],
               "brain_mask_ml": round(original_ml if spec is None else undilated_brain(segmenter, scan)[1]),
               "possible": len(result.possible),
               "possible_outside_brain": sum("outside the brain" in r["reason"] for r in result.possible),
               "warnings": result.warnings,
               "false_lesions": false_lesions(result, truth, brain),
               "seconds": result.timings_s}
        rows.append(row)
        print(json.dumps(row), flush=True)
    card = segmenter.package.card
    if args.json:
        rule = "card rule" if args.card_rule else "candidate stage"
        Path(args.json).write_text(json.dumps({"model": f"{card.name} {card.version}", "rule": rule, "rows": rows},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
