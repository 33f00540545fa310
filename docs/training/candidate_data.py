"""Candidates of a synthetic set, with features and ground truth, for training and testing the
candidate scorer (docs/training/candidate_stage.md).

Usage::

    python docs/training/candidate_data.py SYNTH -o CACHE [--model brainmetseg-demo] \
        [--candidate-threshold 0.5] [--outline-threshold 0.4] [--prefix s1100_] \
        [--slice-thickness 5 --in-plane 0.5]

Per case (``brainmetseg synth`` layout: imagesTr, instancesTr) the model runs once through the
library's pipeline (deepbet brain extraction, as ``segment`` does; the card's own operating
point, scorer not applied) and CACHE/<case>/ keeps its probability map, brain mask and run
seconds, so features can be recomputed without the network. Then the candidates
(:func:`BrainMetSegLib.candidate_stage.find_candidates`) with their features go to
CACHE/<case>/candidates.json, with for each candidate whether it overlaps a ground-truth
lesion and whether its core is RANO-BM measurable on the axial plane (``rano_measurable``, for a
scorer's ``axial_measurable`` large rule), and for each ground-truth lesion its size (the
library's longest 3D surface diameter) and the candidates that overlap it.

--slice-thickness re-acquires each phantom as 2D slices that thick (slab-averaged,
:mod:`BrainMetSegLib.synth.reacquire`, as ``benchmarks/robustness.py`` does; CACHE/<case>/scan.nii.gz)
and runs the pipeline on that scan. The truth stays the phantom's own (1 mm grid): candidates
are mapped onto it by nearest neighbour, each keeping its id (a candidate too small to keep a
voxel there overlaps nothing: false), as the robustness benchmark scores. Each candidate also
records the fraction of it outside the phantom's brain mask (``outside_phantom_brain``; the
benchmark calls a false lesion "outside the brain" above 0.5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.candidate_stage import candidate_measurable, find_candidates
from BrainMetSegLib.lesions import Frame, component_diameters_mm
from BrainMetSegLib.options import Mirroring, Precision, values
from BrainMetSegLib.pipeline import CaseInputs, SegmentConfig, Segmenter
from BrainMetSegLib.preprocess import dilate_mm
from BrainMetSegLib.synth.reacquire import Reacquisition, reacquire


def infer(seg: Segmenter, image: Path, cid: str, out: Path) -> None:
    t0 = time.perf_counter()
    result = seg.run(CaseInputs(str(image), case_id=cid))
    out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(result.probability, str(out / "probability.nii.gz"))
    sitk.WriteImage(result.brain_mask, str(out / "brain.nii.gz"))
    seconds = sum(v for k, v in result.timings_s.items() if k != "load_model")
    (out / "run.json").write_text(json.dumps({"seconds": seconds, "wall": time.perf_counter() - t0,
                                              "timings_s": result.timings_s,
                                              "weights_run": result.provenance["model"].get("weights_run")})
                                  + "\n")


def from_segment(seg: Path, mask_path: Path, out: Path) -> None:
    """Cache a `segment` run's probability map with the phantom's brain mask dilated 4 mm."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(seg / "probability.nii.gz", out / "probability.nii.gz")
    mask = sitk.ReadImage(str(mask_path))
    dilated = dilate_mm(sitk.GetArrayFromImage(mask) > 0, SegmentConfig.mask_dilation_mm, mask.GetSpacing())
    image = sitk.GetImageFromArray(dilated.astype(np.uint8))
    image.CopyInformation(mask)
    sitk.WriteImage(image, str(out / "brain.nii.gz"))
    timings = json.loads((seg / "run.json").read_text())["timings_s"]
    (out / "run.json").write_text(json.dumps({"seconds": sum(v for k, v in timings.items() if k != "load_model"),
                                              "timings_s": timings, "from": str(seg)}) + "\n")


def reacquired_scan(image: Path, mask: Path, spec: Reacquisition, out: Path) -> Path:
    """``out``/scan.nii.gz: the phantom ``image`` re-acquired by ``spec`` (written once)."""
    scan = out / "scan.nii.gz"
    if not scan.is_file():
        out.mkdir(parents=True, exist_ok=True)
        images = {"image": sitk.ReadImage(str(image)), "brain": sitk.ReadImage(str(mask))}
        sitk.WriteImage(reacquire(images, spec, labels=("brain",))["image"], str(scan))
    return scan


def on_grid(labels: np.ndarray, grid: sitk.Image, like: sitk.Image) -> np.ndarray:
    """(Z, Y, X) ids of ``labels`` (on ``grid``'s grid) mapped onto ``like``'s grid by nearest
    neighbour (the identity when the grids are the same)."""
    if grid.GetSize() == like.GetSize() and all(
            np.allclose(getattr(grid, f)(), getattr(like, f)()) for f in ("GetSpacing", "GetOrigin", "GetDirection")):
        return labels
    image = sitk.GetImageFromArray(labels.astype(np.uint32))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(sitk.Resample(image, like, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt32)).astype(np.int64)


def outside_fraction(cand_labels: np.ndarray, brain: np.ndarray, n: int) -> list[float]:
    """Per candidate 1..n: fraction of its voxels (on the brain mask's grid) outside ``brain``;
    1.0 for one without a voxel there."""
    total = np.bincount(cand_labels.ravel(), minlength=n + 1)[1:]
    outside = np.bincount(cand_labels[~brain].ravel(), minlength=n + 1)[1:]
    return [float(o / t) if t else 1.0 for o, t in zip(outside, total, strict=True)]


def ground_truth_links(cand_labels: np.ndarray, gt: sitk.Image,
                       n_candidates: int | None = None) -> tuple[list[dict], list[list[int]]]:
    """GT lesions ({id, diameter_mm, candidates}) and, per candidate, the GT ids it overlaps
    (``cand_labels`` on ``gt``'s grid; ``n_candidates``: their number, when some may have lost
    every voxel in the mapping)."""
    g = sitk.GetArrayFromImage(gt).astype(np.int64)
    ids = np.unique(g[g > 0])
    n = int(g.max(initial=0))
    n_cand = int(cand_labels.max(initial=0)) if n_candidates is None else n_candidates
    diam = component_diameters_mm(g, n, Frame.of(gt)) if n else np.zeros(0)
    both = (g > 0) & (cand_labels > 0)
    pairs = np.unique(np.stack([g[both], cand_labels[both]]), axis=1) if both.any() else np.zeros((2, 0), int)
    lesions = [{"id": int(i), "diameter_mm": float(diam[i - 1]),
                "candidates": [int(c) for c in pairs[1][pairs[0] == i]]} for i in ids]
    per_cand = [[int(i) for i in pairs[0][pairs[1] == c]] for c in range(1, n_cand + 1)]
    return lesions, per_cand


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("synth", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--model", default="brainmetseg-demo")
    p.add_argument("--candidate-threshold", type=float, default=0.5)
    p.add_argument("--outline-threshold", type=float, default=0.4)
    p.add_argument("--prefix", default="", help="prefix for case ids (e.g. s1100_)")
    p.add_argument("--brain-mask", choices=("deepbet", "generator"), default="deepbet",
                   help="generator: the phantom's own brain mask (brainmasksTr), which saves deepbet's time")
    p.add_argument("--shard", default="0/1", help="I/N: every N-th case from the I-th (parallel runs)")
    p.add_argument("--probability-from", type=Path, metavar="SEGDIR",
                   help="use the probability maps of an earlier `segment` run (SEGDIR/<case>/probability.nii.gz) "
                        "instead of running the network; the brain mask is then the phantom's, dilated as the "
                        "pipeline dilates deepbet's (4 mm)")
    p.add_argument("--precision", default="fp32", choices=values(Precision),
                   help="the network's arithmetic (default fp32: the shipped scorers were fitted on fp32 "
                        "candidates; auto = what segment runs on this CPU, e.g. demo 2.6.0's int8 network)")
    p.add_argument("--mirror", default="none", choices=values(Mirroring),
                   help="test-time mirroring of the network (SegmentConfig.mirror), to price it")
    p.add_argument("--slice-thickness", type=float, metavar="MM",
                   help="re-acquire each phantom as 2D slices MM thick (slab-averaged) before the pipeline runs")
    p.add_argument("--in-plane", type=float, metavar="MM", help="in-plane spacing with --slice-thickness "
                   "(default: the phantom's)")
    p.add_argument("--infer-only", action="store_true",
                   help="only run the network (a test set's probability maps, before the scorer is fixed: "
                        "nothing about its candidates or ground truth is computed or printed)")
    args = p.parse_args()
    spec = (Reacquisition(slice_thickness_mm=args.slice_thickness, in_plane_mm=args.in_plane)
            if args.slice_thickness else None)
    cases = sorted(f.name[: -len("_0000.nii.gz")] for f in (args.synth / "imagesTr").glob("*_0000.nii.gz"))
    shard, n_shards = (int(v) for v in args.shard.split("/"))
    cases = cases[shard::n_shards]
    previous = None  # the last case's Segmenter: its networks serve the next case
    for cid in cases:
        out = args.output / f"{args.prefix}{cid}"
        image = args.synth / "imagesTr" / f"{cid}_0000.nii.gz"
        phantom_brain = args.synth / "brainmasksTr" / f"{cid}.nii.gz"
        if spec is not None:
            image = reacquired_scan(image, phantom_brain, spec, out)
        if not (out / "run.json").is_file() and args.probability_from:
            from_segment(args.probability_from / cid, args.synth / "brainmasksTr" / f"{cid}.nii.gz", out)
        if not (out / "run.json").is_file():
            mask = (str(args.synth / "brainmasksTr" / f"{cid}.nii.gz") if args.brain_mask == "generator"
                    else "deepbet")
            seg = Segmenter(SegmentConfig(model=args.model, device="cpu", brain_mask=mask, mirror=args.mirror,
                                          precision=args.precision))
            if previous is not None:  # one network per set of weights (main / thick-slice) for every case
                seg.share_networks(previous)
            infer(seg, image, cid, out)
            previous = seg
        if args.infer_only:
            print(f"{out.name}: probability map cached", flush=True)
            continue
        t0 = time.perf_counter()
        prob = sitk.ReadImage(str(out / "probability.nii.gz"))
        cand = find_candidates(prob, sitk.ReadImage(str(image), sitk.sitkFloat32),
                               sitk.ReadImage(str(out / "brain.nii.gz")),
                               args.candidate_threshold, args.outline_threshold)
        seconds = time.perf_counter() - t0
        measurable = candidate_measurable(cand.labels, prob, args.candidate_threshold)
        truth = sitk.ReadImage(str(args.synth / "instancesTr" / f"{cid}.nii.gz"))
        n_cand = len(cand.features)
        mapped = on_grid(cand.labels, prob, truth)
        lesions, per_cand = ground_truth_links(mapped, truth, n_cand)
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_brain))) > 0
        record = {"case": out.name, "candidate_threshold": args.candidate_threshold,
                  "outline_threshold": args.outline_threshold, "feature_seconds": seconds,
                  "spacing_mm": list(prob.GetSpacing()),
                  "features": cand.features.tolist(), "gt_of_candidate": per_cand, "lesions": lesions,
                  "outside_phantom_brain": outside_fraction(mapped, brain, n_cand),
                  "rano_measurable": measurable.tolist()}
        (out / "candidates.json").write_text(json.dumps(record) + "\n")
        pos = sum(bool(g) for g in per_cand)
        print(f"{out.name}: {len(per_cand)} candidates ({pos} on lesions), "
              f"{sum(bool(les['candidates']) for les in lesions)}/{len(lesions)} lesions reached, "
              f"features {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
