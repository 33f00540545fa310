"""The demo network's forward input, case by case: where its size comes from, how much of it is
padding, what a forward one size divisor smaller would leave out, how far the probabilities move
when the zero padding grows, and the forward's seconds at the planned shape against one divisor
less (interleaved, in one process).

    python benchmarks/bench_forward_shape.py [--phantoms DIR] [--cases 12] [--padding-check 6]
        [--aligned-check 0] [--ab-rounds 5] [--backend-cache FOLDER] [--json OUT]

Cases: the bench's Colin27 head (bench_pipeline.anatomy_on_grid), the bundled sample, and the
first ``--cases`` images of a ``brainmetseg synth`` folder (``imagesTr/*_0000.nii.gz``).
Preprocessing is the demo Segmenter's (deepbet, 4 mm gate, crop margin 0); the forward is
OpenVINO fp32, as a CPU without native bf16 runs it. Axis order: (Z, Y, X) voxels of the model
grid (0.833 mm). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import anatomy_on_grid  # noqa: E402

from BrainMetSegLib.inference import one_window, plan_windows  # noqa: E402
from BrainMetSegLib.options import Device, InferenceMode  # noqa: E402
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter  # noqa: E402
from BrainMetSegLib.preprocess import _crop_box, preprocess  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Sample" / "sample_ce_t1.nii.gz"


def cases(phantoms: str | None, n: int):
    """(name, CE-T1 image) of the bench head, the sample and ``n`` phantoms."""
    yield "bench_colin27", anatomy_on_grid()
    yield "sample", sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)
    if phantoms:
        for path in sorted(Path(phantoms, "imagesTr").glob("*_0000.nii.gz"))[:n]:
            yield path.name[:-len("_0000.nii.gz")], sitk.ReadImage(str(path), sitk.sitkFloat32)


def fewest_left_out(mask: np.ndarray, axis: int, width: int) -> int:
    """The fewest ``mask`` voxels outside any run of ``width`` slices along ``axis``."""
    per_slice = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    if width >= per_slice.size:
        return 0
    inside = np.convolve(per_slice, np.ones(width, np.int64), mode="valid").max()
    return int(per_slice.sum() - inside)


def box_row(pre, roi_zyx, divisor: int, spacing_mm: float) -> dict:
    """Where the forward's size comes from: brain box, gate box (the crop), forward, and what a
    forward one divisor smaller along each axis would leave out of the gate and of the brain."""
    brain, gate = pre.brain_undilated, pre.brain
    brain_box = [s.stop - s.start for s in _crop_box(brain, [0, 0, 0])]
    crop = list(pre.array.shape[1:])
    smaller = {}
    for axis, r in enumerate(roi_zyx):
        if r - divisor > 0:
            smaller["zyx"[axis]] = {"forward_fraction_saved": round(divisor / r, 3),
                                    "gate_voxels_left_out": fewest_left_out(gate, axis, r - divisor),
                                    "brain_voxels_left_out": fewest_left_out(brain, axis, r - divisor)}
    forward = math.prod(roi_zyx)
    return {"brain_box_zyx": brain_box, "brain_box_mm": [round(b * spacing_mm, 1) for b in brain_box],
            "gate_box_zyx": crop, "forward_zyx": list(roi_zyx),
            "slack_zyx": [r - c for r, c in zip(roi_zyx, crop, strict=True)],
            "padding_fraction": round(1 - math.prod(crop) / forward, 3),
            "outside_gate_fraction": round(1 - int(gate.sum()) / forward, 3),
            "one_divisor_less": smaller}


def probabilities(forward, array: np.ndarray, roi_zyx) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(array))[None]
    return torch.sigmoid(one_window(forward, x, roi_zyx)[0, 0].float()).numpy()


def candidates(prob: np.ndarray, gate: np.ndarray) -> tuple[int, int]:
    """Components (26-connected) of p > 0.5 inside the gate (the candidate stage's input) and their voxels."""
    import cc3d

    above = (prob > 0.5) & gate
    return int(cc3d.connected_components(above, connectivity=26).max()), int(above.sum())


def where_moved(moved: np.ndarray, pre, p0: np.ndarray, roi_zyx) -> dict:
    """Where the ``moved`` gate voxels lie: voxels to the planned forward's nearest face, signed
    voxels to the brain mask's surface (+ outside), candidate regions (p0 > 0.5) they touch."""
    import cc3d
    from scipy import ndimage

    at = np.argwhere(moved & pre.brain)
    if not len(at):
        return {"voxels": 0}
    before = np.array([(r - s) // 2 for r, s in zip(roi_zyx, pre.array.shape[1:], strict=True)])
    face = np.minimum(at + before, np.array(roi_zyx) - 1 - (at + before)).min(axis=1)
    brain = pre.brain_undilated
    signed = np.where(brain, -ndimage.distance_transform_edt(brain), ndimage.distance_transform_edt(~brain))
    regions = cc3d.connected_components((p0 > 0.5) & pre.brain, connectivity=26)
    quartiles = [0, 25, 50, 75, 100]
    return {"voxels": len(at), "face_distance_quartiles": np.percentile(face, quartiles).round(1).tolist(),
            "surface_distance_quartiles": np.percentile(signed[tuple(at.T)], quartiles).round(1).tolist(),
            "candidates_touched": int(np.count_nonzero(np.unique(regions[tuple(at.T)])))}


def padding_check(forward, pre, p0: np.ndarray, roi_zyx, divisor: int, more: int = 1) -> dict:
    """The same crop with ``more`` divisors more zero padding on every axis (split before and
    after as MONAI splits it: one divisor moves the brain by half a divisor against the
    network's stride, two keep its alignment): how far p (``p0``: the planned forward's) moves."""
    padded = [r + more * divisor for r in roi_zyx]
    p1 = probabilities(forward, pre.array, padded)
    diff = np.abs(p1 - p0)
    return {"padded_zyx": padded, "brain_shift_mod_divisor": (more * divisor // 2) % divisor,
            "where_over_0.1": where_moved(diff > 0.1, pre, p0, roi_zyx),
            "max_abs_p_difference_gate": float(diff[pre.brain].max()),
            "max_abs_p_difference_brain": float(diff[pre.brain_undilated].max()),
            "gate_voxels_over_0.01": int((diff[pre.brain] > 0.01).sum()),
            "candidates_planned": candidates(p0, pre.brain), "candidates_padded": candidates(p1, pre.brain)}


def best_start(mask: np.ndarray, axis: int, width: int) -> int:
    """The first slice of the run of ``width`` slices along ``axis`` holding the most ``mask`` voxels."""
    per_slice = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    return int(np.argmax(np.convolve(per_slice, np.ones(width, np.int64), mode="valid")))


def fit_check(forward, pre, p0: np.ndarray, roi_zyx, smaller: dict, divisor: int) -> dict | None:
    """The forward one divisor smaller along every axis where that leaves no brain voxel out (the
    run of slices keeping the most gate voxels), against the planned one: what it leaves out of
    the gate, how high the planned p was there, how far p moves in what it keeps."""
    axes = [a for a, k in enumerate("zyx") if k in smaller and smaller[k]["brain_voxels_left_out"] == 0]
    if not axes:
        return None
    box, roi = [slice(None)] * 3, list(roi_zyx)
    for a in axes:
        roi[a] -= divisor
        start = best_start(pre.brain, a, roi[a])
        box[a] = slice(start, start + roi[a])
    box = tuple(box)
    p1 = probabilities(forward, pre.array[(slice(None), *box)], roi)
    kept = np.zeros_like(pre.brain)
    kept[box] = True
    diff = np.abs(p1 - p0[box])
    return {"forward_zyx": roi, "axes": ["zyx"[a] for a in axes],
            "forward_fraction_saved": round(1 - math.prod(roi) / math.prod(roi_zyx), 3),
            "gate_voxels_left_out": int((pre.brain & ~kept).sum()),
            "max_planned_p_left_out": float(p0[pre.brain & ~kept].max(initial=0.0)),
            "max_abs_p_difference_gate_kept": float(diff[pre.brain[box]].max()),
            "max_abs_p_difference_brain": float(diff[pre.brain_undilated[box]].max()),
            "candidates_planned": candidates(p0, pre.brain), "candidates_fit": candidates(p1, pre.brain[box])}


def ab_timing(forward, pre, roi_zyx, divisor: int, rounds: int) -> dict:
    """Seconds (wall, process CPU) of the planned forward against one divisor less along the
    axis with the most slack (the input cropped to fit: timing only), alternating."""
    axis = int(np.argmax([r - c for r, c in zip(roi_zyx, pre.array.shape[1:], strict=True)]))
    small = list(roi_zyx)
    small[axis] -= divisor
    cut = pre.array[(slice(None), *(slice(0, s) for s in small))]
    shapes = {"planned": (pre.array, roi_zyx), "one_divisor_less": (cut, small)}
    for array, roi in shapes.values():  # warm-up: OpenVINO allocates per shape
        probabilities(forward, array, roi)
    out = {k: {"wall_s": [], "cpu_s": []} for k in shapes}
    for _ in range(rounds):
        for k, (array, roi) in shapes.items():
            c0, t0 = time.process_time(), time.perf_counter()
            probabilities(forward, array, roi)
            out[k]["wall_s"].append(round(time.perf_counter() - t0, 3))
            out[k]["cpu_s"].append(round(time.process_time() - c0, 3))
    ratios = [s / p for s, p in zip(out["one_divisor_less"]["wall_s"], out["planned"]["wall_s"], strict=True)]
    return {"axis": "zyx"[axis], "shapes_zyx": {k: list(v[1]) for k, v in shapes.items()}, **out,
            "paired_wall_ratio_median": round(float(np.median(ratios)), 3),
            "cpu_ratio_of_medians": round(float(np.median(out["one_divisor_less"]["cpu_s"])
                                                / np.median(out["planned"]["cpu_s"])), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", metavar="DIR", help="a brainmetseg synth folder")
    parser.add_argument("--cases", type=int, default=12, help="phantoms to measure")
    parser.add_argument("--padding-check", type=int, default=6, help="cases (in order) whose forward is rerun "
                        "with one divisor more padding")
    parser.add_argument("--aligned-check", type=int, default=0, help="cases (in order) also rerun with two "
                        "divisors more padding (the brain's alignment to the stride kept)")
    parser.add_argument("--ab-rounds", type=int, default=5, help="interleaved timing rounds (bench head); 0: none")
    parser.add_argument("--backend-cache", metavar="FOLDER")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    from BrainMetSegLib.openvino_backend import openvino_forward
    from BrainMetSegLib.precision import cpu_features

    seg = Segmenter(SegmentConfig(model="brainmetseg-demo", device="cpu", backend_cache=args.backend_cache))
    config = replace(seg.inference_config, mode=InferenceMode.WHOLE, bytes_per_voxel=1.0)
    divisor = config.size_divisor
    forward, record = openvino_forward(seg.package.load_network("cpu"), 1, divisor,
                                       seg.package.network_identity(), args.backend_cache)
    rows = []
    for k, (name, image) in enumerate(cases(args.phantoms, args.cases)):
        pre = preprocess([image], seg.preprocess_config)
        roi = plan_windows(None, pre.array.shape, config, Device.CPU).roi_zyx
        row = {"case": name, **box_row(pre, roi, divisor, seg.preprocess_config.spacing_mm[0])}
        if k < args.padding_check:
            p0 = probabilities(forward, pre.array, roi)
            row["more_padding"] = padding_check(forward, pre, p0, roi, divisor)
            if k < args.aligned_check:
                row["more_padding_aligned"] = padding_check(forward, pre, p0, roi, divisor, more=2)
            row["one_divisor_less_fit"] = fit_check(forward, pre, p0, roi, row["one_divisor_less"], divisor)
        if k == 0 and args.ab_rounds:
            row["forward_ab"] = ab_timing(forward, pre, roi, divisor, args.ab_rounds)
        print(json.dumps(row), flush=True)
        rows.append(row)
    dataset = Path(args.phantoms or "", "dataset.json")
    seed = (json.loads(dataset.read_text()).get("synthetic", {}).get("seed")
            if args.phantoms and dataset.is_file() else None)
    result = {"command": " ".join(sys.argv), "phantoms_seed": seed, "cpu": platform.processor() or platform.machine(),
              "cpu_features": cpu_features().as_dict(), "threads": record["threads"],
              "openvino": record["openvino"], "load_average_at_end": os.getloadavg(),
              "divisor": divisor, "patch_size_xyz": list(seg.inference_config.patch_size),
              "mask_dilation_mm": seg.preprocess_config.mask_dilation_mm,
              "crop_margin_mm": seg.preprocess_config.crop_margin_mm, "cases": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
