"""What the robustness benchmark's false lesions outside the brain are (docs/robustness.md,
"The 7 mm false lesions outside the brain"): where they lie, what deepbet's mask made of them
at each slice thickness, and how the candidate stage scored them.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/robustness_false_outside.py -o /work/data/rob6000_22 \
        --variant slice7mm --json benchmarks/results/robustness_demo_2.3.0_7mm_false_outside.json \
        --figure docs/robustness_7mm_false_outside.png

From the benchmark's cached results (``benchmarks/robustness.py``, OUT/results/<model key>/
<variant>/<case>.labels.nii.gz; default: the default model's key), each false lesion counted
"outside the brain" (mapped onto the phantom's 1 mm grid, nearest: no truth lesion touched and
more than half outside the phantom's brain mask, ``robustness.score``'s rule) is described:

- ``volume_mm3``, ``centroid_ras`` (1 mm grid), ``slices`` (the scan's slice indices it holds,
  of ``n_slices``), ``outside_phantom_brain`` (fraction), ``mm_outside_phantom_brain`` (median
  distance of its voxels to the phantom's brain mask, 0 inside);
- ``outside_deepbet``: the fraction outside deepbet's undilated mask on the scan (the candidate
  stage's outside-the-brain rule lists a lesion above 0.95 as possible);
  ``inside_deepbet_by_variant``: the fraction of it (1 mm grid) inside deepbet's undilated mask
  made on the same phantom re-acquired as the original and as 3, 5 and 7 mm slices;
- ``near_confounders``: the fraction of it within 2 mm of each enhancing look-alike the
  phantom was drawn with (regenerated from ``--seed``: dural sinuses, cortical veins, falx and
  dura, choroid plexus);
- ``lesion_probability`` and ``features``: the candidate holding most of it, scored again by
  segmenting the re-acquired scan (``reproduced``: the run gave the cached labels).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import VARIANTS, cached_row, model_key  # noqa: E402
from robustness_outside_rule import undilated_mask  # noqa: E402

from BrainMetSegLib.candidates import FEATURES  # noqa: E402
from BrainMetSegLib.synth.dataset import case_paths  # noqa: E402
from BrainMetSegLib.synth.reacquire import reacquire  # noqa: E402

MASK_VARIANTS = ("original", "slice3mm", "slice5mm", "slice7mm")
NEAR_MM = 2.0  # a false lesion "near" an enhancing look-alike: its voxels within this of it


def near_confounders(lesion: np.ndarray, confounders: dict[str, np.ndarray], near_vox: int) -> dict[str, float]:
    """For each of the phantom's enhancing look-alikes (bool masks, name -> array, the lesion's
    grid), the fraction of ``lesion``'s voxels within ``near_vox`` voxels of it (chessboard)."""
    box = np.ones((2 * near_vox + 1,) * 3, bool)
    return {name: round(float(ndimage.binary_dilation(mask, box)[lesion].mean()), 3) if mask.any() else 0.0
            for name, mask in confounders.items()}


def phantom_confounders(seed: int, k: int, brain: np.ndarray) -> dict[str, np.ndarray] | None:
    """The enhancing look-alikes of phantom ``k`` of ``seed`` (from ``synth.case.plan_case``'s
    masks: ``sinus`` the template's dural sinuses, ``cortical_veins`` the veins drawn on the
    brain's surface, ``falx_dura`` falx and convexity dura, ``choroid``), regenerated as
    ``robustness.phantom`` made it; None if the regenerated brain is not ``brain``."""
    from BrainMetSegLib.synth import SynthConfig
    from BrainMetSegLib.synth.case import plan_case
    from BrainMetSegLib.synth.dataset import case_seed
    from BrainMetSegLib.synth.templates import REGION_SINUS

    plan = plan_case(case_seed(seed, k), SynthConfig(anisotropic_acquisition=False))
    if not np.array_equal(plan.brain > 0, brain):
        return None
    sinus = plan.anat.region == REGION_SINUS
    return {"sinus": sinus, "cortical_veins": plan.masks["vessels"] & ~sinus, "falx_dura": plan.masks["dura"],
            "choroid": plan.masks["choroid"]}


def false_outside(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> list[dict]:
    """False lesions of ``pred`` (Z, Y, X) lesion ids on the phantom's grid that ``robustness.score``
    counts outside the brain: no voxel on a truth lesion (``truth`` ids > 0) and more than half
    outside ``brain`` (bool). Each: ``id``, ``voxels``, ``outside_phantom_brain``, ``kji`` (the
    centroid, index), ``mm_outside_phantom_brain`` (median distance of its voxels to the brain,
    in voxels of the grid: the caller scales isotropic grids)."""
    distance = ndimage.distance_transform_edt(~brain) if brain.any() else np.zeros(brain.shape)
    rows = []
    for i in np.unique(pred[pred > 0]):
        sel = pred == i
        if (truth[sel] > 0).any() or brain[sel].mean() >= 0.5:
            continue
        rows.append({"id": int(i), "voxels": int(sel.sum()),
                     "outside_phantom_brain": round(1 - float(brain[sel].mean()), 3),
                     "kji": np.argwhere(sel).mean(axis=0).tolist(),
                     "mm_outside_phantom_brain": float(np.median(distance[sel]))})
    return rows


def holding_candidate(candidates: np.ndarray, lesion: np.ndarray) -> int:
    """The candidate id (of ``candidates``, scan grid) holding most of ``lesion`` (bool); 0: none."""
    ids, counts = np.unique(candidates[lesion & (candidates > 0)], return_counts=True)
    return int(ids[np.argmax(counts)]) if ids.size else 0


def _on(image: sitk.Image, like: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(image, like, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def case_rows(segmenter, out: Path, key: str, variant: str, k: int, seed: int) -> list[dict]:
    """The false lesions outside the brain of one cached case, described (module docstring)."""
    from BrainMetSegLib.candidate_stage import find_candidates, outside_fractions

    cid = f"synth_{k:03d}"
    paths = case_paths(out / "phantoms", cid)
    image, truth, brain = (sitk.ReadImage(str(paths[n])) for n in ("image", "instances", "brain"))
    cached = sitk.ReadImage(str(out / "results" / key / variant / f"{cid}.labels.nii.gz"))
    spacing = float(np.mean(truth.GetSpacing()))
    rows = false_outside(_on(cached, truth), sitk.GetArrayFromImage(truth), sitk.GetArrayFromImage(brain) > 0)
    if not rows:
        return []
    scan = reacquire({"image": image, "brain": brain}, VARIANTS[variant], labels=("brain",))["image"]
    result = segmenter.run_images([scan], cid)
    cand = find_candidates(result.probability, scan, result.brain_mask, segmenter.scorer.candidate_threshold,
                           segmenter.operating_point.outline_threshold)
    lesion_p = segmenter.scorer.probability(cand.features)
    lab = sitk.GetArrayFromImage(cached)
    core = sitk.GetArrayFromImage(undilated_mask(segmenter, scan)) > 0
    outside = outside_fractions(lab.astype(np.int32), core)
    masks = {v: _on(undilated_mask(segmenter, reacquire({"image": image}, VARIANTS[v])["image"]), truth) > 0
             for v in MASK_VARIANTS}
    on_truth = _on(cached, truth)
    confounders = phantom_confounders(seed, k, sitk.GetArrayFromImage(brain) > 0)
    for row in rows:
        i, sel = row["id"], on_truth == row["id"]
        c = holding_candidate(cand.labels, lab == i)
        lps = truth.TransformContinuousIndexToPhysicalPoint([float(v) for v in row.pop("kji")[::-1]])
        row.update({"case": cid, "variant": variant, "volume_mm3": round(row.pop("voxels") * spacing ** 3, 1),
                    "centroid_ras": [round(-lps[0], 1), round(-lps[1], 1), round(lps[2], 1)],
                    "mm_outside_phantom_brain": round(row["mm_outside_phantom_brain"] * spacing, 1),
                    "slices": np.flatnonzero((lab == i).any(axis=(1, 2))).tolist(), "n_slices": int(lab.shape[0]),
                    "outside_deepbet": round(float(outside[i - 1]), 3),
                    "inside_deepbet_by_variant": {v: round(float(m[sel].mean()), 3) for v, m in masks.items()},
                    "near_confounders": (near_confounders(sel, confounders, round(NEAR_MM / spacing))
                                         if confounders is not None else None),
                    "candidate": c, "lesion_probability": round(float(lesion_p[c - 1]), 3) if c else None,
                    "features": (dict(zip(FEATURES, np.round(cand.features[c - 1], 3).tolist(), strict=True))
                                 if c else None),
                    "reproduced": bool(np.array_equal(sitk.GetArrayFromImage(result.labels) > 0, lab > 0))})
        print(json.dumps({k: v for k, v in row.items() if k != "features"}), flush=True)
    return rows


def figure(segmenter, out: Path, key: str, variant: str, rows: list[dict], path: str) -> None:
    """One row per false lesion: the scan's slice through it (the lesion red, the phantom's brain
    cyan, deepbet's undilated mask on the scan yellow) and the 1 mm phantom 2 mm below and above
    the slab's centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage import measure

    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.8 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows, strict=True):
        paths = case_paths(out / "phantoms", row["case"])
        image, brain = (sitk.ReadImage(str(paths[k])) for k in ("image", "brain"))
        scans = reacquire({"image": image, "brain": brain}, VARIANTS[variant], labels=("brain",))
        cached = sitk.ReadImage(str(out / "results" / key / variant / f"{row['case']}.labels.nii.gz"))
        lab, on_phantom = sitk.GetArrayFromImage(cached), _on(cached, image)
        k = row["slices"][len(row["slices"]) // 2]
        j, i = np.argwhere(lab[k] == row["id"]).mean(axis=0).round().astype(int)
        ras = np.array(row["centroid_ras"]) * [-1, -1, 1]
        ii, jj, kk = image.TransformPhysicalPointToIndex(ras.tolist())
        deepbet = sitk.GetArrayFromImage(undilated_mask(segmenter, scans["image"]))[k] > 0
        panels = [(sitk.GetArrayFromImage(scans["image"])[k], sitk.GetArrayFromImage(scans["brain"])[k] > 0,
                   lab[k] == row["id"], deepbet, (j, i), 60, f"{row['case']}, {variant} slice {k}")]
        for dz in (-2, 2):
            panels.append((sitk.GetArrayFromImage(image)[kk + dz], sitk.GetArrayFromImage(brain)[kk + dz] > 0,
                           on_phantom[kk + dz] == row["id"], None, (jj, ii), 30, f"1 mm phantom, {dz:+d} mm"))
        for ax, (img, br, les, db, (cj, ci), h, title) in zip(ax_row, panels, strict=True):
            box = (slice(max(cj - h, 0), cj + h), slice(max(ci - h, 0), ci + h))
            ax.imshow(img[box], cmap="gray", origin="lower")
            for mask, colour in ((br, "cyan"), (les, "red"), *([(db, "yellow")] if db is not None else [])):
                for c in measure.find_contours(mask[box].astype(float), 0.5):
                    ax.plot(c[:, 1], c[:, 0], colour, lw=1)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("false lesion (red), the phantom's brain mask (cyan), deepbet's on the scan (yellow)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True, help="the robustness benchmark's work folder")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--seed", type=int, default=6000, help="the benchmark's phantom seed (to regenerate look-alikes)")
    p.add_argument("--variant", default="slice7mm", choices=list(VARIANTS))
    p.add_argument("--model-key", help="cached results of this model key (default: the default model's)")
    p.add_argument("--json")
    p.add_argument("--figure", help="write a PNG of each false lesion outside the brain here")
    args = p.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    out = Path(args.output)
    segmenter = Segmenter(SegmentConfig())
    key = args.model_key or model_key(segmenter.package.card)
    rows = []
    for k in range(args.n):
        cached = cached_row(out, key, args.variant, f"synth_{k:03d}")
        if cached is not None and cached["fp_outside_brain"]:
            rows += case_rows(segmenter, out, key, args.variant, k, args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps({"model_key": key, "variant": args.variant, "n": args.n,
                                               "false_outside": rows}, indent=1) + "\n")
    if args.figure and rows:
        figure(segmenter, out, key, args.variant, rows, args.figure)


if __name__ == "__main__":
    main()
