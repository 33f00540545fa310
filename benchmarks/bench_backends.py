"""fp32 inference backends on the same network and input, interleaved in one process:
torch (oneDNN) vs ONNX Runtime vs OpenVINO.

    pip install onnxruntime openvino onnx
    python benchmarks/bench_backends.py [--model paper|demo] [--shapes-xyz 160 224 192 128 128 128]
        [--rounds 3] [--threads 2] [--json OUT]

The network (``paper``: the paper's FlexibleUNet-ResNet34, random weights, seed 0; ``demo``:
the bundled demo model) is exported once to ONNX (legacy TorchScript exporter, traced on a 32x32x64 input, dynamic
spatial axes; MONAI's type-A ResNet shortcut uses ``.data``, which a trace freezes into a
constant of the example, so a copy with a traceable shortcut is exported, see
:func:`BrainMetSegLib.backends.traceable_copy`). Export, ONNX Runtime session creation and OpenVINO read and
reshape + compile (per shape) are timed: a pipeline would pay them once per case. Then for each
shape and round (round 0, the first call, reported apart), torch fp32, ONNX Runtime (CPU
provider, all graph optimisations) and OpenVINO
(CPU, latency hint, f32 inference precision) run one forward each on the same random input, in
that order. Reported per backend and shape: seconds per round, median, ratio to torch, and the
largest absolute difference of sigmoid(logit) against torch. The CPU, its flags and the load
average are recorded: on a shared machine read the ratios, not the seconds. Not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.backends import traceable_copy
from BrainMetSegLib.precision import cpu_features


def _network(kind: str):
    if kind == "paper":
        torch.manual_seed(0)
        return build_network("FlexibleUNet", 1, 1, {"backbone": "resnet34", "dropout": 0.5}).eval()
    from BrainMetSegLib.models import DEFAULT_MODEL, load_package

    return load_package(DEFAULT_MODEL).load_network("cpu").eval()


def export_onnx(net, path: Path, in_channels: int, divisor: int) -> None:
    """ONNX with dynamic spatial axes, traced on a ``divisor x divisor x 2 divisor`` input."""
    dyn = {2: "z", 3: "y", 4: "x"}
    with torch.no_grad():
        torch.onnx.export(traceable_copy(net), (torch.zeros(1, in_channels, divisor, divisor, 2 * divisor),),
                          str(path), input_names=["x"], output_names=["logit"],
                          dynamic_axes={"x": dyn, "logit": dyn}, opset_version=17, dynamo=False)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a.astype(np.float64)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("paper", "demo"), default="paper")
    parser.add_argument("--shapes-xyz", type=int, nargs="+", default=[160, 224, 192, 128, 128, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    import onnxruntime as ort
    import openvino as ov

    torch.set_num_threads(args.threads)
    net = _network(args.model)
    shapes = [tuple(args.shapes_xyz[i:i + 3]) for i in range(0, len(args.shapes_xyz), 3)]
    report = {"model": args.model, "cpu": cpu_features().as_dict(), "uptime_load_at_start": os.getloadavg(),
              "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "onnxruntime": ort.__version__, "openvino": ov.__version__, "threads": args.threads,
              "fixed_s": {}, "shapes": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    onnx_path = tmp / "net.onnx"
    t0 = time.perf_counter()
    export_onnx(net, onnx_path, 1, 32)
    report["fixed_s"]["onnx_export_dynamic"] = round(time.perf_counter() - t0, 2)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = False  # the arena keeps the peak of the large forward resident
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    report["fixed_s"]["onnxruntime_session"] = round(time.perf_counter() - t0, 2)
    core = ov.Core()
    t0 = time.perf_counter()
    ov_model = core.read_model(str(onnx_path))
    report["fixed_s"]["openvino_read"] = round(time.perf_counter() - t0, 2)
    print(report["fixed_s"], flush=True)
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.normal(size=(1, 1, *shape[::-1])).astype(np.float32)
        times = {"torch": [], "onnxruntime": [], "openvino": []}
        outs = {}
        t0 = time.perf_counter()
        model = ov_model.clone()
        model.reshape({"x": [1, 1, *shape[::-1]]})
        req = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": str(args.threads),
                                                "PERFORMANCE_HINT": "LATENCY",
                                                "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
        report["fixed_s"][f"openvino_reshape_compile_{'x'.join(map(str, shape))}"] = round(time.perf_counter() - t0, 2)
        runners = {
            "torch": lambda x=x: net(torch.from_numpy(x)).numpy(),
            "onnxruntime": lambda x=x: session.run(None, {"x": x})[0],
            "openvino": lambda x=x, req=req: req.infer({0: x})[0].copy(),
        }
        first = {}
        for r in range(args.rounds + 1):  # round 0: first call (a CLI run makes only this one)
            for name, run in runners.items():
                t0 = time.perf_counter()
                with torch.inference_mode():
                    outs[name] = run()
                seconds = round(time.perf_counter() - t0, 2)
                (times[name].append(seconds) if r else first.__setitem__(name, seconds))
            print(shape, r, {k: v[-1] for k, v in times.items()} if r else first, flush=True)
        ref = _sigmoid(outs["torch"])
        med = {k: float(np.median(v)) for k, v in times.items()}
        report["shapes"]["x".join(map(str, shape))] = {
            "first_call_s": first, "seconds": times, "median_s": med,
            "speedup_vs_torch": {k: round(med["torch"] / v, 3) for k, v in med.items()},
            "max_abs_probability_difference_vs_torch": {
                k: float(np.abs(_sigmoid(outs[k]) - ref).max()) for k in ("onnxruntime", "openvino")}}
        del outs, req
        report["uptime_load_at_end"] = os.getloadavg()
        text = json.dumps(report, indent=2)
        print(text, flush=True)
        if args.json:  # after each shape: a later, larger shape may run out of memory
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
