"""Issue 29's last seconds outside the networks, each change against the code it replaced, in
one process, alternating (old, new, new, old, ...), so machine load hits both alike.

    python benchmarks/bench_outside_networks_ab.py [--repeat 7] [--backend-cache FOLDER] [--json OUT]

Input: the bench's Colin27 head on the 1 mm 256 x 256 x 176 grid (bench_pipeline.anatomy_on_grid),
the bundled demo model, one pipeline run first to get the images the pieces work on. For each
piece: wall seconds, the process's CPU seconds and **this thread's CPU seconds**: on an idle
2-core machine the wall time of a piece whose work is split over two threads is about the busier
thread's, so ``thread`` old -> new is the critical path saved (the wall seconds of a shared machine
are not). The "old" paths are the replaced code, kept here verbatim: outputs staged one by one
(write, fsync, verify in turn), the edge measured after the dilation, the gate and core masks
resampled one by one, the candidate z-score of the whole image, the dependency versions looked
up every case, and the copies removed (the second copy of the three OpenVINO outputs, deepbet's
input copy). Not a pass/fail test; the outputs' identity is checked by Testing/ and by running
old and new checkouts on the same input (docs/speed.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import demo_case, machine  # noqa: E402

from BrainMetSegLib import staging  # noqa: E402
from BrainMetSegLib.candidate_stage import candidate_labels  # noqa: E402
from BrainMetSegLib.candidates import ZScoredWithin, candidate_features, zscore_within  # noqa: E402
from BrainMetSegLib.geometry import Grid, axis_aligned_grid, field_of_view_mask  # noqa: E402
from BrainMetSegLib.images import read_scalar_volume  # noqa: E402
from BrainMetSegLib.lesions import Frame  # noqa: E402
from BrainMetSegLib.pipeline import Segmenter, _dependency_versions, dependency_versions  # noqa: E402
from BrainMetSegLib.preprocess import dilate_mm, edge_ml, preprocess  # noqa: E402
from BrainMetSegLib.slicer_seg import segmentation_image  # noqa: E402


def clock(fn) -> tuple[float, float, float]:
    """(wall, process CPU, this thread's CPU) seconds of ``fn()``."""
    c0, t0, h0 = time.process_time(), time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - h0


def whole_grid_brain(pre, grid: Grid) -> np.ndarray:
    """The undilated brain of ``pre`` (cropped) put back on the whole model grid."""
    brain = np.zeros(grid.size_xyz[::-1], bool)
    start = [round((o1 - o0) / s) for o0, o1, s in zip(grid.origin_lps, pre.geometry.model_grid.origin_lps,
                                                        grid.spacing_xyz, strict=True)][::-1]
    brain[tuple(slice(a, a + n) for a, n in zip(start, pre.brain_undilated.shape, strict=True))] = pre.brain_undilated
    return brain


def pairs(seg: Segmenter, path: Path, out: Path) -> dict:
    """{piece: (old, new)} callables on one case's data."""
    result = seg.run(str(path))
    image = read_scalar_volume(path)
    pre = preprocess([image], seg.preprocess_config)
    grid = axis_aligned_grid(image, seg.preprocess_config.spacing_mm)
    fov = field_of_view_mask(Grid.of(image), grid)
    brain, spacing = whole_grid_brain(pre, grid), grid.spacing_xyz

    def items():
        return [(sitk.Cast(result.labels, sitk.sitkUInt16), out / "lesion_labels.nii.gz"),
                (sitk.Cast(result.probability, sitk.sitkFloat32), out / "probability.nii.gz"),
                (segmentation_image(result.labels), out / "lesions.seg.nrrd")]

    def write_old():
        for tmp in [staging.stage_image(i, p) for i, p in items()]:
            tmp.unlink()

    def write_new():
        for tmp in staging.stage_images(items()):
            tmp.unlink()

    def edge_new():
        with ThreadPoolExecutor(max_workers=1) as pool:
            edge = pool.submit(edge_ml, brain, fov, spacing)
            dilate_mm(brain, 4.0, spacing) & fov
            edge.result()

    prob = sitk.GetArrayViewFromImage(result.probability)
    gate = sitk.GetArrayViewFromImage(result.brain_mask) > 0
    cut = seg.scorer.candidate_threshold
    labels = candidate_labels(result.probability, cut, seg.operating_point.outline_threshold)
    frame, ce = Frame.of(result.probability), sitk.GetArrayFromImage(image)  # a view would outlive image
    rng = np.random.default_rng(0)
    outputs = [rng.random((1, 1, 192, 256, 192), np.float32), rng.random((1, 2, 256, 256, 256), np.float32),
               rng.random((1, 2, 128, 128, 128), np.float32)]
    ras = rng.random(grid.size_xyz, np.float32)
    return {
        "write (3 images staged)": (write_old, write_new),
        "edge beside the dilation": (lambda: (dilate_mm(brain, 4.0, spacing) & fov, edge_ml(brain, fov, spacing)),
                                     edge_new),
        "gate + core masks to the input grid": (
            lambda: [pre.geometry.to_input(m.astype(np.uint8), linear=False)
                     for m in (pre.brain, pre.brain_undilated)],
            lambda: pre.geometry.masks_to_input(pre.brain, pre.brain_undilated)),
        "candidate z-score": (
            lambda: candidate_features(labels, prob, zscore_within(ce.astype(np.float32), gate), gate, frame, cut),
            lambda: candidate_features(labels, prob, ZScoredWithin(ce, gate, np.float32), gate, frame, cut)),
        "dependency versions": (_dependency_versions.__wrapped__, dependency_versions),
        "copies removed": (lambda: ([np.array(o, copy=True) for o in outputs], ras.copy()), lambda: None),
    }, {"candidates": int(labels.max(initial=0)), "lesions": result.n_lesions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backend-cache", metavar="FOLDER")
    parser.add_argument("--json")
    args = parser.parse_args()
    path, seg = demo_case("bmsab-", args.backend_cache)
    work = path.parent
    report = {"machine": machine()}
    (work / "out").mkdir()
    pieces, report["case"] = pairs(seg, path, work / "out")
    runs = {name: {f"{side}_{m}": [] for side in ("old", "new") for m in ("wall", "cpu", "thread")}
            for name in pieces}
    for r in range(args.repeat):
        for name, (old, new) in pieces.items():
            for side, fn in (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old)):
                for m, v in zip(("wall", "cpu", "thread"), clock(fn), strict=True):
                    runs[name][f"{side}_{m}"].append(round(v, 4))
    report["pieces"] = {name: {**v, **{f"median_{k}": statistics.median(x) for k, x in v.items()}}
                        for name, v in runs.items()}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    for name, v in report["pieces"].items():
        print(f"{name}: " + ", ".join(f"{m} {v['median_old_' + m]:.3f} -> {v['median_new_' + m]:.3f} s"
                                      for m in ("wall", "cpu", "thread")))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
