"""Robustness to what clinics send: the same phantoms at other orientations, slice thicknesses
and fields of view, segmented and scored against the same ground truth.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/robustness.py -n 20 --seed 6000 -o /tmp/robustness \
        --json benchmarks/results/robustness_demo_2.2.0.json --markdown /tmp/robustness_table.md

(docs/robustness_table.md holds that table for each model measured, the latest first.)

Phantoms: ``brainmetseg synth -n N --seed SEED --isotropic-only`` (1 mm isotropic, axis-aligned:
the "original"). Each is re-acquired (:mod:`BrainMetSegLib.synth.reacquire`, same physical head)
as every variant: tilted 15 and 30 degrees about x and y; 2D slices 3, 5 and 7 mm thick
(slab-averaged, 0.5 mm in-plane for 5 and 7 mm as spin echo is written; axial, and 5 mm also
coronal and sagittal); the brain's box only;
the top 20 mm of the brain cut off (vertex). Each re-acquired scan goes through the whole
pipeline (``Segmenter.run``, model card defaults); its lesion labels are mapped back onto the
original grid (nearest, each keeping its id) and matched with the original ground truth (any
overlap). Lesion size for the ">= 10 mm" column: the truth lesion's longest diameter
(``lesions.component_diameters_mm``).
Truth lesions mostly outside a variant's field of view are left out of its counts. A false
lesion is "outside the brain" when most of it lies outside the phantom's brain mask.

Per model, case and variant the result is cached in OUT/results/<model>/<variant>/<case>.json
(<model>: the card's name, version and the first 12 hex digits of its weights' and candidate
scorer's sha256, :func:`model_key`), so a run can be stopped and continued, or grown with a
larger -n, and a result of another model is never reused. Prints one line per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.geometry import Grid, field_of_view_mask
from BrainMetSegLib.lesions import Frame, component_diameters_mm
from BrainMetSegLib.options import GRID_SHIFTS
from BrainMetSegLib.precision import cpu_features
from BrainMetSegLib.synth.reacquire import Reacquisition, reacquire

VARIANTS = {
    "original": Reacquisition(),
    "tilt15x15": Reacquisition(tilt_deg=(15.0, 15.0)),
    "tilt30x30": Reacquisition(tilt_deg=(30.0, 30.0)),
    "slice3mm": Reacquisition(slice_thickness_mm=3.0),
    "slice5mm": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5),
    "slice7mm": Reacquisition(slice_thickness_mm=7.0, in_plane_mm=0.5),
    "slice5mm-coronal": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5, slice_plane="coronal"),
    "slice5mm-sagittal": Reacquisition(slice_thickness_mm=5.0, in_plane_mm=0.5, slice_plane="sagittal"),
    "reformat3mm": Reacquisition(slice_thickness_mm=3.0, slab=False),
    "fov-brain": Reacquisition(field_of_view="brain"),
    "fov-vertex-cut": Reacquisition(field_of_view="vertex-cut", vertex_cut_mm=20.0),
}


def phantom(folder: Path, k: int, seed: int) -> str:
    """Write (or reuse) isotropic phantom ``k`` of the dataset ``seed``; its case id."""
    from BrainMetSegLib.synth import SynthConfig, write_dataset
    from BrainMetSegLib.synth.dataset import case_id, case_paths

    paths = case_paths(folder, case_id(k))
    if not all(paths[n].exists() for n in ("image", "instances", "brain", "lesions")):
        write_dataset(folder, 1, seed=seed, config=SynthConfig(anisotropic_acquisition=False), start=k,
                      overwrite=True)
    return case_id(k)


def score(pred_labels: sitk.Image, truth: sitk.Image, brain: sitk.Image, variant_grid: Grid) -> dict:
    """Lesion counts of ``pred_labels`` (instance ids, any grid) against ``truth`` (instances,
    original grid). Each predicted lesion keeps the segmenter's own id through the nearest-
    neighbour mapping (recomputing components on another grid would split or merge some); a
    predicted lesion too small to keep a voxel on the original grid counts as false."""
    pred = sitk.GetArrayFromImage(sitk.Resample(pred_labels, truth, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0, sitk.sitkUInt32))
    gt = sitk.GetArrayFromImage(truth)
    in_fov = field_of_view_mask(variant_grid, Grid.of(truth))
    all_ids = np.unique(gt[gt > 0])
    ids = [i for i in all_ids if in_fov[gt == i].mean() >= 0.5]
    brain_arr = sitk.GetArrayViewFromImage(brain) > 0
    diameters = component_diameters_mm(gt, int(gt.max()), Frame.of(truth))
    gt_rows = [(bool((pred[gt == i] > 0).any()), float(diameters[i - 1])) for i in ids]
    fp, outside = [], 0
    for p in np.unique(sitk.GetArrayViewFromImage(pred_labels)):
        if p == 0:
            continue
        sel = pred == p
        if sel.any() and np.isin(gt[sel], ids).any():
            continue
        fp.append(round(float(sel.sum()) * float(np.prod(truth.GetSpacing())), 1))
        outside += bool(sel.any() and brain_arr[sel].mean() < 0.5)
    return {"gt_lesions": len(ids), "gt_lesions_outside_fov": int(len(all_ids) - len(ids)),
            "detected": sum(d for d, _ in gt_rows),
            "gt_ge10mm": sum(e >= 10 for _, e in gt_rows),
            "detected_ge10mm": sum(d and e >= 10 for d, e in gt_rows),
            "fp": len(fp), "fp_outside_brain": outside, "fp_volumes_mm3": fp}


def model_key(card, mirror: str = "none", engine: str = "auto/auto", grid_shifts: int = 1) -> str:
    """The cache key of a model: ``name-version-<weights sha256[:12]>[-<scorer sha256[:12]>-out<cut>]``
    (a retrained network or scorer under the same version still gets its own results; <cut>: the
    candidate stage's outside-the-brain rule, :data:`~BrainMetSegLib.candidate_stage.OUTSIDE_BRAIN_MAX_FRACTION`,
    so results made before the rule, or with another cut, are not reused); ``-deepbet<thin>-<thick>``:
    the cubes deepbet's network runs on for thin and thick scans (:data:`~BrainMetSegLib.skullstrip.DEEPBET_GRID`,
    ``DEEPBET_GRID_THICK``, read at each call: ``with_deepbet_grid.py`` sets both), since the mask moves
    lesions near the network's decision; ``-mirror<axes>`` when test-time mirroring ran;
    ``-grids<N>`` when N test-time grid shifts ran;
    ``-<precision>-<backend>`` when either was asked for (not auto)."""
    from BrainMetSegLib import skullstrip
    from BrainMetSegLib.candidate_stage import OUTSIDE_BRAIN_MAX_FRACTION

    key = f"{card.name}-{card.version}-{(card.sha256 or 'nosha')[:12]}"
    scorer = (card.candidate_scorer or {}).get("sha256", "")
    key = f"{key}-{scorer[:12]}-out{OUTSIDE_BRAIN_MAX_FRACTION:g}" if scorer else key
    key = f"{key}-deepbet{skullstrip.DEEPBET_GRID}-{skullstrip.DEEPBET_GRID_THICK}"
    key = key if mirror == "none" else f"{key}-mirror{mirror}"
    key = key if grid_shifts == 1 else f"{key}-grids{grid_shifts}"
    return key if engine == "auto/auto" else f"{key}-{engine.replace('/', '-')}"


def cache_path(out: Path, key: str, variant: str, cid: str) -> Path:
    """Where the result of model ``key`` on case ``cid`` as ``variant`` is cached."""
    return out / "results" / key / variant / f"{cid}.json"


def cached_row(out: Path, key: str, variant: str, cid: str) -> dict | None:
    """The cached result of model ``key``, or None (none, or written by another model)."""
    cache = cache_path(out, key, variant, cid)
    if not cache.exists():
        return None
    row = json.loads(cache.read_text())
    return row if row.get("model") == key else None


def run_case(segmenter, folder: Path, cid: str, variant: str, out: Path) -> dict:
    """Re-acquire, segment and score one case as one variant; cached in ``out`` per model."""
    key = model_key(segmenter.package.card, segmenter.config.mirror,
                    f"{segmenter.config.precision}/{segmenter.config.backend}", segmenter.config.grid_shifts)
    cache = cache_path(out, key, variant, cid)
    row = cached_row(out, key, variant, cid)
    if row is not None:
        return row
    from BrainMetSegLib.synth.dataset import case_paths

    paths = case_paths(folder, cid)
    image, truth, brain = (sitk.ReadImage(str(paths[k])) for k in ("image", "instances", "brain"))
    scans = reacquire({"image": image, "brain": brain}, VARIANTS[variant], labels=("brain",))
    scan_path = out / "scans" / variant / f"{cid}.nii.gz"
    scan_path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(scans["image"], str(scan_path))
    t0 = time.perf_counter()
    result = segmenter.run(str(scan_path))
    seconds = time.perf_counter() - t0
    row = {"case": cid, "variant": variant, "model": key, "seconds": round(seconds, 2), "warnings": result.warnings,
           "spacing_mm": list(scans["image"].GetSpacing()),
           **score(result.labels, truth, brain, Grid.of(scans["image"]))}
    cache.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(result.labels, str(cache.with_suffix(".labels.nii.gz")))  # to re-score without re-running
    cache.write_text(json.dumps(row, indent=1) + "\n")
    scan_path.unlink()  # re-made from the phantom when needed; keeps OUT small
    return row


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    gt, det = sum(r["gt_lesions"] for r in rows), sum(r["detected"] for r in rows)
    g10, d10 = sum(r["gt_ge10mm"] for r in rows), sum(r["detected_ge10mm"] for r in rows)
    fp = sum(r["fp"] for r in rows)
    return {"cases": n, "gt_lesions": gt, "detected": det, "sensitivity": round(det / gt, 3) if gt else None,
            "gt_ge10mm": g10, "sensitivity_ge10mm": round(d10 / g10, 3) if g10 else None,
            "fp": fp, "fp_per_case": round(fp / n, 2) if n else None,
            "fp_outside_brain": sum(r["fp_outside_brain"] for r in rows),
            "gt_outside_fov": sum(r["gt_lesions_outside_fov"] for r in rows),
            "cases_warned": sum(bool(r["warnings"]) for r in rows),
            "median_seconds": round(statistics.median(r["seconds"] for r in rows), 1) if n else None}


def markdown(summary: dict, header: str) -> str:
    cols = ["variant", "cases", "lesions found", "sensitivity", ">=10 mm", "FP/case", "FP outside brain",
            "cases warned"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name in sorted(summary, key=list(VARIANTS).index):
        s = summary[name]
        if not s["cases"]:
            continue
        ge10 = f"{s['sensitivity_ge10mm']} ({s['gt_ge10mm']})" if s["gt_ge10mm"] else "-"
        lines.append(f"| {name} | {s['cases']} | {s['detected']}/{s['gt_lesions']} | {s['sensitivity']} | {ge10} "
                     f"| {s['fp_per_case']} | {s['fp_outside_brain']} | {s['cases_warned']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20, help="phantoms per variant (default 20)")
    p.add_argument("--seed", type=int, default=6000)
    p.add_argument("-o", "--output", required=True, help="work folder (phantoms, cached results)")
    p.add_argument("--model", default="brainmetseg-demo")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--json", help="write the per-case rows and the summary here")
    p.add_argument("--mirror", default="none", choices=("none", "lr", "all"),
                   help="test-time mirroring (segment --mirror), to measure what it changes")
    p.add_argument("--grid-shifts", type=int, default=1, choices=GRID_SHIFTS,
                   help="test-time grid shifts (segment --grid-shifts), to measure what they change")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="segment --precision (results cached apart from auto's)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino"),
                   help="segment --backend (results cached apart from auto's)")
    p.add_argument("--markdown", help="write the summary table here")
    p.add_argument("--cached-only", action="store_true",
                   help="summarise the cached results only (what a stopped run finished), run nothing")
    args = p.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    out = Path(args.output)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"robustness.py: unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    segmenter = Segmenter(SegmentConfig(model=args.model, mirror=args.mirror, precision=args.precision,
                                         backend=args.backend, grid_shifts=args.grid_shifts))
    key = model_key(segmenter.package.card, segmenter.config.mirror,
                    f"{segmenter.config.precision}/{segmenter.config.backend}", segmenter.config.grid_shifts)
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    for k in range(args.n):  # case-major: every variant has the same cases whenever the run stops
        if args.cached_only:
            cid = f"synth_{k:03d}"
            cached = [cached_row(out, key, v, cid) for v in variants]
            if any(r is None for r in cached):
                continue  # only cases every variant has, so the variants compare
            for v, r in zip(variants, cached):
                rows[v].append(r)
            continue
        cid = phantom(out / "phantoms", k, args.seed)
        for v in variants:
            rows[v].append(run_case(segmenter, out / "phantoms", cid, v, out))
            print(v, cid, json.dumps({x: rows[v][-1][x] for x in ("gt_lesions", "detected", "fp")}), flush=True)
    summary = {v: summarise(r) for v, r in rows.items()}
    for v, s in summary.items():
        print(v, json.dumps(s))
    card = segmenter.package.card
    n_cases = len(next(iter(rows.values()), []))
    header = (f"Model {card.name} {card.version}; {n_cases} phantoms (`brainmetseg synth --seed {args.seed} "
              "--isotropic-only`, cases synth_000...); truth lesions outside a variant's field of view left out.")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": f"{card.name} {card.version}", "model_key": key,
                                               "seed": args.seed, "cpu": cpu_features().as_dict(),
                                               "n": n_cases, "summary": summary, "rows": rows}, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(summary, header))


if __name__ == "__main__":
    main()
