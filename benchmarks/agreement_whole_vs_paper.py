"""How much whole-volume inference (and bf16) changes the answer, against the paper's windows.

    brainmetseg synth -n 10 -o /tmp/p14 --seed 4000
    python benchmarks/agreement_whole_vs_paper.py /tmp/p14 [--model brainmetseg-demo] [--json OUT]

Per phantom the brain mask (deepbet; ``--given-masks``: the phantom's own) is computed once and
shared, then the whole pipeline (inference, gating, resampling back, threshold, lesions) runs
once per variant:

- ``paper128``: the paper's sliding window, 128^3, 50 % overlap, averaged, fp32 (reference);
- ``paper_card``: the model card's own patch and overlap, fp32;
- ``whole_fp32``: one forward over the cropped, padded brain, fp32;
- ``whole_bf16``: the same in bf16 autocast + channels_last_3d;
- ``auto``: what ``--inference-mode auto --precision auto`` picks on this machine;
- ``whole_fp32_margin0`` / ``auto_margin0``: as ``whole_fp32`` / ``auto`` without the 8 mm crop
  margin around the dilated brain (the array is zero there anyway; fewer voxels to compute).
- ``auto_fp32`` / ``auto_int8``: ``segment``'s own plan in fp32 and with the package's int8
  network (``--package-network``: the int8 network runs only as the package's).
- ``auto_bf16_torch`` / ``auto_bf16_openvino``: the same plan in bf16, through torch's autocast
  and through OpenVINO's bf16 kernels (a CPU with native bf16; ``--package-network``).
- ``whole_fp32_pad16`` / ``whole_fp32_pad32``: ``whole_fp32`` with a crop margin of 16 / 32
  voxels of the demo's 0.833 mm grid (13.3 / 26.65 mm): the same gate with more zeros around it
  in a larger forward, as far as the model grid reaches (where it stops a margin short, the brain
  also moves against the network's stride).

``--variants a,b --reference a`` runs only those (e.g. ``--variants whole_fp32,whole_fp32_margin0
--reference whole_fp32`` measures what the crop margin changes). Reported against the reference
(default ``paper128``), on the input grid: voxel Dice of the lesion masks, lesions
found by one and not the other (26-connected, any overlap), the largest probability
difference, and how the true lesions both found were drawn (volume ratio and longest-diameter
difference against the reference's drawing); and each variant's lesion sensitivity against the
phantom's ground truth and its voxel Dice against the ground truth, its false-positive lesions,
its drawn volumes against the truth and its inference seconds (in-process, same machine, same
load). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cc3d
import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.evaluate.lesionwise import match_lesions
from BrainMetSegLib.geometry import axis_aligned_grid, resample
from BrainMetSegLib.images import read_scalar_volume
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from BrainMetSegLib.precision import cpu_features
from BrainMetSegLib.preprocess import brain_mask_on_grid

VARIANTS = {
    "paper128": dict(inference_mode="paper", patch_size=(128, 128, 128), overlap=0.5, precision="fp32"),
    "paper_card": dict(inference_mode="paper", precision="fp32"),
    "whole_fp32": dict(inference_mode="whole", precision="fp32"),
    "whole_bf16": dict(inference_mode="whole", precision="bf16"),
    "auto": dict(inference_mode="auto", precision="auto"),
    "whole_fp32_margin0": dict(inference_mode="whole", precision="fp32", crop_margin_mm=0.0),
    "auto_margin0": dict(inference_mode="auto", precision="auto", crop_margin_mm=0.0),
    # 16 and 32 voxels of zeros around the gate at 0.833 mm (the demo's grid), as far as the model
    # grid reaches: the same gate in a larger forward (docs/speed.md, the demo network's input)
    "whole_fp32_pad16": dict(inference_mode="whole", precision="fp32", crop_margin_mm=13.3),
    "whole_fp32_pad32": dict(inference_mode="whole", precision="fp32", crop_margin_mm=26.65),
    # the package's int8 network against fp32 as segment runs them (with --package-network)
    "auto_fp32": dict(inference_mode="auto", precision="fp32"),
    "auto_int8": dict(inference_mode="auto", precision="int8"),
    # bf16 in torch and in OpenVINO (CPUs with native bf16; with --package-network)
    "auto_bf16_torch": dict(inference_mode="auto", precision="bf16", backend="torch"),
    "auto_bf16_openvino": dict(inference_mode="auto", precision="bf16", backend="openvino"),
}
QUICK = ("paper128", "whole_fp32", "whole_bf16")


def lesions_only_in(a: np.ndarray, b: np.ndarray) -> int:
    """Components of ``a`` (instance labels) that touch no foreground of ``b``."""
    ids = np.unique(a[(a > 0) & (b > 0)])
    return int(a.max()) - len(ids)


def gt_hits(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    comps = cc3d.connected_components(gt > 0, connectivity=26)
    hit = np.unique(comps[(comps > 0) & (pred > 0)])
    return len(hit), int(comps.max())


def drawn_true_lesions(gt: np.ndarray, lab: np.ndarray, image: sitk.Image) -> dict[str, list[float]]:
    """Per true lesion found (evaluate's overlap rule): [true volume mm^3, drawn volume mm^3,
    drawn longest diameter mm] (the drawing: the predicted lesions matched to it)."""
    match = match_lesions(gt, lab, image.GetSpacing(), direction=image.GetDirection())
    return {str(g.gt_id): [round(g.volume_mm3, 1), round(g.pred_volume_mm3, 1), round(g.pred_longest_diameter_mm, 2)]
            for g in match.gt if g.detected}


def drawing_summary(rows: list[dict], name: str, ref_name: str) -> dict:
    """How ``name`` drew the true lesions both it and the reference found, against the
    reference's drawing and against the truth (volume ratios; diameter differences in mm)."""
    ratio, diff, truth = [], [], []
    for r in rows:
        a, b = r[name]["drawn"], r[ref_name]["drawn"]
        truth += [v[1] / v[0] for v in a.values() if v[0] > 0]
        for g in set(a) & set(b):
            ratio.append(a[g][1] / b[g][1])
            diff.append(a[g][2] - b[g][2])
    if not ratio:
        return {}
    ratio, diff = np.array(ratio), np.array(diff)
    return {"lesions_both_found": len(ratio), "volume_ratio_vs_reference_median": round(float(np.median(ratio)), 4),
            "volume_ratio_vs_reference_range": [round(float(ratio.min()), 3), round(float(ratio.max()), 3)],
            "diameter_mm_vs_reference_median": round(float(np.median(diff)), 3),
            "diameter_mm_vs_reference_sd": round(float(diff.std()), 3),
            "diameter_mm_vs_reference_max_abs": round(float(np.abs(diff).max()), 2),
            "volume_ratio_vs_truth_median": round(float(np.median(truth)), 4)}


def deepbet_mask_file(image: sitk.Image, spacing, folder: Path) -> str:
    grid_image = resample(sitk.Cast(image, sitk.sitkFloat32), axis_aligned_grid(image, spacing))
    mask = sitk.GetImageFromArray(brain_mask_on_grid(grid_image, "deepbet").astype(np.uint8))
    mask.CopyInformation(grid_image)
    path = folder / "mask.nii.gz"
    sitk.WriteImage(mask, str(path))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phantoms", help="folder written by brainmetseg synth")
    parser.add_argument("--model", default="brainmetseg-demo")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help=f"only the variants {', '.join(QUICK)}")
    parser.add_argument("--rows", help="JSON-lines file of per-case rows: cases in it are skipped, "
                                       "new rows appended (resume an interrupted run)")
    parser.add_argument("--variants", help="comma-separated variants to run (default: all)")
    parser.add_argument("--reference", default="paper128", help="the variant the others are compared with")
    parser.add_argument("--package-network", action="store_true", help="run the package's network as "
                        "`segment` does (OpenVINO on a CPU running fp32) instead of one torch network shared")
    parser.add_argument("--given-masks", action="store_true", help="use the phantoms' own brain masks "
                        "(brainmasksTr/<case>.nii.gz) instead of deepbet's (no deepbet: less memory and time)")
    args = parser.parse_args()
    wanted = QUICK if args.quick else (args.variants.split(",") if args.variants else list(VARIANTS))
    unknown = [k for k in [*wanted, args.reference] if k not in VARIANTS]
    if unknown or args.reference not in wanted:
        parser.error(f"unknown variant(s) {unknown} or reference {args.reference!r} not among the variants")
    variants = {k: VARIANTS[k] for k in wanted}
    ref_name = args.reference
    root = Path(args.phantoms)
    cases = sorted(p for p in (root / "imagesTr").glob("*_0000.nii.gz"))
    base = Segmenter(SegmentConfig(model=args.model, device="cpu"))
    # one torch network shared by every variant (runs in torch), or --package-network: each
    # variant's Segmenter runs the package as segment does (OpenVINO where the backend picks it)
    package, net = base.package, (None if args.package_network else base.net)
    rows_file = Path(args.rows) if args.rows else None
    rows = ([json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
            if rows_file and rows_file.exists() else [])
    done = {r["case"] for r in rows}
    work = Path(tempfile.mkdtemp(prefix="bms-agree-"))
    for path in cases:
        case = path.name.replace("_0000.nii.gz", "")
        if case in done:
            continue
        image = read_scalar_volume(str(path), "CE-T1")
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr" / f"{case}.nii.gz")))
        mask = (str(root / "brainmasksTr" / f"{case}.nii.gz") if args.given_masks
                else deepbet_mask_file(image, package.card.spacing_mm, work))
        results, backends = {}, {}
        for name, kw in variants.items():
            seg = Segmenter(SegmentConfig(model=args.model, device="cpu", brain_mask=mask, **kw), package,
                            network=net)
            t0 = time.perf_counter()
            res = seg.run_images([image], case)
            results[name] = (res, time.perf_counter() - t0)
            backends[name] = res.provenance["inference_run"].get("backend", {}).get("used")
        ref = sitk.GetArrayFromImage(results[ref_name][0].labels)
        ref_p = sitk.GetArrayFromImage(results[ref_name][0].probability)
        row = {"case": case, "gt_lesions": gt_hits(gt, gt)[1]}
        for name, (res, _seconds) in results.items():
            lab = sitk.GetArrayFromImage(res.labels)
            prob = sitk.GetArrayFromImage(res.probability)
            denom = (lab > 0).sum() + (ref > 0).sum()
            row[name] = {
                "inference_s": res.timings_s["inference"],
                "plan": {k: res.provenance["inference_run"][k] for k in ("mode", "roi_xyz", "windows")},
                "backend": backends[name],
                "autocast": res.provenance["inference_run"]["precision"]["autocast"],
                "lesions": res.n_lesions,
                "voxel_dice_vs_reference": round(float(2 * ((lab > 0) & (ref > 0)).sum() / denom), 5)
                if denom else 1.0,
                "lesions_only_here": lesions_only_in(lab, ref),
                "lesions_only_in_reference": lesions_only_in(ref, lab),
                "max_abs_prob_diff": round(float(np.abs(prob - ref_p).max()), 5),
                "gt_lesions_found": gt_hits(gt, lab)[0],
                "false_positive_lesions": lesions_only_in(lab, gt),
                "voxel_dice_vs_gt": round(float(2 * ((lab > 0) & (gt > 0)).sum()
                                                / max((lab > 0).sum() + (gt > 0).sum(), 1)), 5),
                "drawn": drawn_true_lesions(gt, lab, res.labels),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if rows_file:
            with rows_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    summary = {}
    for name in [k for k in VARIANTS if all(k in r for r in rows)]:
        vals = [r[name] for r in rows]
        summary[name] = {
            "inference_s_total": round(sum(v["inference_s"] for v in vals), 2),
            "voxel_dice_vs_reference_min": min(v["voxel_dice_vs_reference"] for v in vals),
            "voxel_dice_vs_reference_mean": round(float(np.mean([v["voxel_dice_vs_reference"] for v in vals])), 5),
            "lesions_total": sum(v["lesions"] for v in vals),
            "lesions_only_here_total": sum(v["lesions_only_here"] for v in vals),
            "lesions_only_in_reference_total": sum(v["lesions_only_in_reference"] for v in vals),
            "max_abs_prob_diff": max(v["max_abs_prob_diff"] for v in vals),
            "gt_lesions_found": sum(v["gt_lesions_found"] for v in vals),
            "gt_lesions": sum(r["gt_lesions"] for r in rows),
            "false_positive_lesions": sum(v["false_positive_lesions"] for v in vals),
            "voxel_dice_vs_gt_mean": round(float(np.mean([v["voxel_dice_vs_gt"] for v in vals])), 5),
            "drawing": drawing_summary(rows, name, ref_name) if all("drawn" in r[name] for r in rows) else {},
        }
    seed = json.loads((root / "dataset.json").read_text())["synthetic"]["seed"]
    report = {"data": f"{len(rows)} synthetic phantoms (brainmetseg synth --seed {seed}) in {root}",
              "brain_masks": "the phantoms' own (brainmasksTr)" if args.given_masks else "deepbet's",
              "model": f"{package.card.name} {package.card.version}", "reference": ref_name,
              "cpu": cpu_features().as_dict(), "load_average": os.getloadavg(),
              "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
              "summary": summary, "cases": rows}
    text = json.dumps(report, indent=2)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
