"""The ONNX export used by benchmarks/bench_backends.py keeps MONAI's type-A ResNet shortcut a
function of its input, so ONNX Runtime agrees with torch at sizes other than the example's."""

from pathlib import Path

import numpy as np
import pytest
import torch

from BrainMetSegLib.architectures import build_network
from conftest import load_script

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def bench_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_backends.py"
    return load_script(path, "bench_backends")


def test_dynamic_export_agrees_with_torch(tmp_path):
    torch.manual_seed(0)
    net = build_network("FlexibleUNet", 1, 1, {"backbone": "resnet10_w16", "dropout": 0.0,
                                               "decoder_channels": [32, 16, 16, 8, 8]}).eval()
    path = tmp_path / "net.onnx"
    bench_module().export_onnx(net, path, 1, 32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 1, 64, 96, 64)  # not the 32x32x64 example
    with torch.inference_mode():
        ref = net(x).numpy()
    out = session.run(None, {"x": x.numpy()})[0]
    assert out.shape == ref.shape
    spread = float(ref.max() - ref.min())
    assert spread > 0 and np.abs(out - ref).max() <= 1e-3 * spread
    # the shortcut is really used: the input changes the output in the same way in both
    x2 = x * 2 + 1
    with torch.inference_mode():
        ref2 = net(x2).numpy()
    assert np.abs(session.run(None, {"x": x2.numpy()})[0] - ref2).max() <= 1e-3 * float(ref2.max() - ref2.min())
