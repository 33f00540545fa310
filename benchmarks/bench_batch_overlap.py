"""Does reading + preprocessing the next case in a background thread, while the current
case runs through the network, speed up a cohort run on this machine?

    python benchmarks/bench_batch_overlap.py MANIFEST.csv [--cases 4] [--repeats 2] [--model NAME]

Runs the same cases in one process, alternating two schedules so that a change in the
machine's load hits both alike: ``sequential`` (read, preprocess, infer, post-process,
write; next case) and ``overlap`` (the next case's read + preprocess submitted to a
one-thread executor before the current case's inference). Both use the pipeline's own
functions and the same loaded model; the model is loaded and warmed up before timing.
Prints and writes (``--json``) the wall and CPU seconds of each repeat and the ratio of
median wall times. On a machine shared with other work the overlap schedule, having more
runnable threads, also takes a larger share of the cores: compare the CPU seconds too.
Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from BrainMetSegLib.commands.segment import read_manifest
from BrainMetSegLib.images import read_scalar_volume
from BrainMetSegLib.inference import predict
from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from BrainMetSegLib.preprocess import preprocess
from BrainMetSegLib.staging import write_image


def prepare(seg: Segmenter, case):
    """Read and preprocess one case (the part that could run ahead in a thread)."""
    images = [read_scalar_volume(case.t1ce, "CE-T1")]
    return preprocess(images, seg.preprocess_config)


def finish(seg: Segmenter, pre, out: Path) -> int:
    """Inference, post-processing and writing of one prepared case; returns the lesion count."""
    prob = predict(seg.net, pre.array, seg.inference_config)
    prob[~pre.brain] = 0.0
    probability = pre.geometry.to_input(prob.astype(np.float32), linear=True)
    labels = lesion_labels(probability, OperatingPoint(seg.threshold, seg.min_volume))
    table = lesion_table(labels, probability)
    out.mkdir(parents=True, exist_ok=True)
    write_image(sitk.Cast(labels, sitk.sitkUInt16), out / "lesion_labels.nii.gz", overwrite=True)
    write_image(probability, out / "probability.nii.gz", overwrite=True)
    return len(table)


def sequential(seg, cases, out) -> list[int]:
    return [finish(seg, prepare(seg, c), out / c.id) for c in cases]


def overlap(seg, cases, out) -> list[int]:
    counts = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(prepare, seg, cases[0])
        for k, case in enumerate(cases):
            pre = ahead.result()
            if k + 1 < len(cases):
                ahead = pool.submit(prepare, seg, cases[k + 1])
            counts.append(finish(seg, pre, out / case.id))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=SegmentConfig.model)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    cases = read_manifest(args.manifest)[: args.cases]
    seg = Segmenter(SegmentConfig(model=args.model, device="cpu"))
    out = Path(tempfile.mkdtemp(prefix="bench_overlap_"))
    counts = sequential(seg, cases[:1], out / "warmup")  # loads the model and deepbet
    times: dict[str, list[float]] = {"sequential": [], "overlap": []}
    cpu: dict[str, list[float]] = {"sequential": [], "overlap": []}
    loads = []
    for r in range(args.repeats):
        for name, schedule in (("sequential", sequential), ("overlap", overlap)):
            t0, c0 = time.perf_counter(), time.process_time()
            counts = schedule(seg, cases, out / f"{name}{r}")
            times[name].append(round(time.perf_counter() - t0, 1))
            cpu[name].append(round(time.process_time() - c0, 1))  # all threads of this process
            loads.append(round(os.getloadavg()[0], 1))
            print(f"repeat {r} {name:10s} {times[name][-1]:7.1f} s wall, {cpu[name][-1]:7.1f} s CPU for "
                  f"{len(cases)} cases (lesions {counts}), load {loads[-1]}", flush=True)
    ratio = statistics.median(times["sequential"]) / statistics.median(times["overlap"])
    result = {"cases": len(cases), "model": seg.package.card.name, "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "wall_s": times, "cpu_s": cpu, "load_average_1min": loads,
              "speedup_overlap": round(ratio, 3)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
