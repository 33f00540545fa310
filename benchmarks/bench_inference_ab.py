"""Inference only, interleaved in one process: our plan vs MONAI's default 128^3 windows.

    python benchmarks/bench_inference_ab.py [--shape-xyz 203 247 201] [--full-xyz 307 307 211]
        [--rounds 2] [--json OUT]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_inference_ab.py ...

On a shared machine the load changes from minute to minute, so a baseline of 48 windows run
after our pipeline measures the load as much as the code. Here one 128^3 fp32 forward (MONAI's
default window; the network is ~100 % of a sliding window's time) and our plan for the
cropped brain (``predict`` with ``--inference-mode auto --precision auto``) alternate, and
the ratio = windows x median window time / median plan time, for MONAI's default over the
full volume (``--full-xyz``, model grid) and for the paper's windows over the brain box.
Default shapes: Colin27 at 0.833 mm as ``bench_pipeline.py`` crops it. Paper's network,
random weights. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.inference import InferenceConfig, count_windows, predict
from BrainMetSegLib.precision import cpu_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape-xyz", type=int, nargs=3, default=[203, 247, 201])
    parser.add_argument("--full-xyz", type=int, nargs=3, default=[307, 307, 211])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = build_network("FlexibleUNet", 1, 1, {"backbone": "resnet34", "dropout": 0.5}).eval()
    x = np.random.default_rng(0).normal(size=(1, *args.shape_xyz[::-1])).astype(np.float32)
    window = torch.randn(1, 1, 128, 128, 128)
    config = InferenceConfig(device="cpu")
    report = {"cpu": cpu_features().as_dict(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "load_average_at_start": os.getloadavg(), "window_s": [], "ours_s": []}
    info: dict = {}
    for _ in range(args.rounds):
        net.to(memory_format=torch.contiguous_format)
        t0 = time.perf_counter()
        with torch.inference_mode():
            net(window)
        report["window_s"].append(round(time.perf_counter() - t0, 2))
        t0 = time.perf_counter()
        predict(net, x, config, info=info)
        report["ours_s"].append(round(time.perf_counter() - t0, 2))
        print(report["window_s"][-1], report["ours_s"][-1], flush=True)
    w, ours = float(np.median(report["window_s"])), float(np.median(report["ours_s"]))
    full = count_windows(args.full_xyz[::-1], (128,) * 3, 0.5)
    box = count_windows(args.shape_xyz[::-1], (128,) * 3, 0.5)
    report.update({
        "plan": {k: info[k] for k in ("mode", "roi_xyz", "windows", "estimated_mib")},
        "precision": info["precision"],
        "monai_default_full_volume": {"windows": full, "seconds_estimated": round(full * w, 1)},
        "paper_windows_brain_box_fp32": {"windows": box, "seconds_estimated": round(box * w, 1)},
        "speedup_vs_monai_full_volume": round(full * w / ours, 2),
        "speedup_vs_paper_windows_fp32": round(box * w / ours, 2),
        "load_average_at_end": os.getloadavg()})
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
