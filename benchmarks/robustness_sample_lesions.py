"""Each truth lesion of the bundled sample, upright and re-acquired (docs/robustness.md, "Why the
sample at 7 mm loses lesions"): found or not, and where it was lost: its size, the contrast
left after slab averaging, the network's probability, the candidate stage's lesion probability.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/robustness_sample_lesions.py \
        --json benchmarks/results/robustness_sample_lesions_demo2.3.0.json

Scans as ``benchmarks/robustness_sample.py`` makes them (``original``, ``slice7mm``:
``Reacquisition(slice_thickness_mm=7, in_plane_mm=0.5)``; ``oblique25x15`` on request), each
segmented with the default model (``Segmenter.run_images``). Per truth lesion (the sample's
instance labels, 1 mm grid), everything on that grid (the scan's images mapped onto it, nearest:
each 1 mm voxel takes the value of the scan voxel, i.e. the 7 mm slab, it lies in):

- ``volume_mm3``, ``diameter_mm`` (longest 3D), ``z_extent_mm`` (its extent along the grid's
  third axis, S on the sample);
- ``contrast``: mean CE-T1 z-score (within the dilated brain mask) of the lesion minus that of
  a shell 1-3 voxels around it (brain, no lesion); ``peak_contrast``: its highest z-score minus
  the shell's median. On a 7 mm scan both are what slab averaging left;
- ``network_max_p``: the highest metastasis probability the network gave inside the lesion;
  a lesion below the scorer's candidate threshold (0.5) is no candidate: the candidate stage
  never sees it;
- ``candidates``: the candidates touching it, each with its core volume (mm^3, scan grid) and
  lesion probability (the scorer on the features :func:`~BrainMetSegLib.candidate_stage.find_candidates`
  computes from the result's probability map and brain mask, as the pipeline does);
- ``found``: a reported lesion touches it (as ``robustness.score`` counts).
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
from robustness_sample import SAMPLE, SCANS, TRUTH  # noqa: E402

from BrainMetSegLib.lesions import Frame, component_diameters_mm  # noqa: E402
from BrainMetSegLib.synth.reacquire import reacquire  # noqa: E402


def lesion_rows(truth: np.ndarray, frame: Frame, values: np.ndarray, brain: np.ndarray, prob: np.ndarray,
                candidates: np.ndarray, lesion_p: np.ndarray, candidate_mm3: np.ndarray,
                reported: np.ndarray) -> list[dict]:
    """One row per truth lesion 1..N of ``truth`` (Z, Y, X) int instance ids on the original grid
    (``frame``); the other arrays on the same grid: ``values`` the scan's intensities, ``brain``
    bool (z-scoring and the shell), ``prob`` the network's probability, ``candidates`` candidate
    ids (their ``lesion_p`` and ``candidate_mm3`` indexed id - 1), ``reported`` the lesion labels."""
    n = int(truth.max(initial=0))
    diam = component_diameters_mm(truth, n, frame)
    inside = values[brain].astype(np.float64)
    z = (values - inside.mean()) / (inside.std() or 1.0)
    spacing_xyz = np.linalg.norm(frame.matrix, axis=0)
    voxel_mm3 = float(np.prod(spacing_xyz))
    rows = []
    for i in range(1, n + 1):
        sel = truth == i
        shell = ndimage.binary_dilation(sel, iterations=3) & ~ndimage.binary_dilation(sel) & brain & (truth == 0)
        ring = z[shell] if shell.any() else np.zeros(1)
        ks = np.flatnonzero(sel.any(axis=(1, 2)))
        ids = np.unique(candidates[sel])
        ids = ids[ids > 0]
        rows.append({"lesion": i, "volume_mm3": round(float(sel.sum()) * voxel_mm3, 1),
                     "diameter_mm": round(float(diam[i - 1]), 1),
                     "z_extent_mm": round(float(ks.max() - ks.min() + 1) * float(spacing_xyz[2]), 1),
                     "contrast": round(float(z[sel].mean() - ring.mean()), 2),
                     "peak_contrast": round(float(z[sel].max() - np.median(ring)), 2),
                     "network_max_p": round(float(prob[sel].max()), 3),
                     "candidates": [{"id": int(c), "core_mm3": round(float(candidate_mm3[c - 1]), 1),
                                     "lesion_probability": round(float(lesion_p[c - 1]), 3)} for c in ids],
                     "found": bool((reported[sel] > 0).any())})
    return rows


def scan_rows(segmenter, scan: sitk.Image, truth: sitk.Image) -> tuple[list[dict], int]:
    """(per-lesion rows, lesions reported) of one scan segmented by ``segmenter``."""
    from BrainMetSegLib.candidate_stage import find_candidates

    result = segmenter.run_images([scan], "sample")
    scorer = segmenter.scorer
    cand = find_candidates(result.probability, scan, result.brain_mask, scorer.candidate_threshold,
                           segmenter.operating_point.outline_threshold)
    lesion_p = scorer.probability(cand.features)
    core_mm3 = np.exp(cand.features[:, 0]) if len(cand.features) else np.zeros(0)  # log_volume_mm3

    def onto_truth(image: sitk.Image) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.Resample(image, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0))

    labels = sitk.GetImageFromArray(cand.labels.astype(np.int32))
    labels.CopyInformation(result.probability)
    rows = lesion_rows(sitk.GetArrayFromImage(truth), Frame.of(truth), onto_truth(scan).astype(np.float64),
                       onto_truth(result.brain_mask) > 0, onto_truth(result.probability), onto_truth(labels),
                       lesion_p, core_mm3, onto_truth(result.labels))
    return rows, result.n_lesions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", default="original,slice7mm", help="comma-separated, of: " + ", ".join(SCANS))
    p.add_argument("--model", default="brainmetseg-demo")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    segmenter = Segmenter(SegmentConfig(model=args.model))
    if segmenter.scorer is None:
        raise SystemExit(f"robustness_sample_lesions.py: model {args.model} has no candidate scorer.")
    image, truth = sitk.ReadImage(str(SAMPLE)), sitk.ReadImage(str(TRUTH))
    out = {}
    for name in [s.strip() for s in args.scans.split(",") if s.strip()]:
        spec = SCANS[name]
        scan = image if spec is None else reacquire({"image": image}, spec)["image"]
        rows, reported = scan_rows(segmenter, scan, truth)
        out[name] = {"reported": reported, "lesions": rows}
        for row in rows:
            print(name, json.dumps(row), flush=True)
    if args.json:
        card = segmenter.package.card
        Path(args.json).write_text(json.dumps({"model": f"{card.name} {card.version}",
                                               "candidate_threshold": segmenter.scorer.candidate_threshold,
                                               "scans": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
