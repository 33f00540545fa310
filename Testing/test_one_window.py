"""A volume inside one window runs without MONAI's sliding window (and without importing MONAI),
with the same numbers: MONAI's padding split, one forward, the padding cropped."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from BrainMetSegLib.inference import one_window  # noqa: E402


@pytest.mark.parametrize(("shape", "roi"), [((37, 45, 50), (64, 64, 64)), ((32, 48, 64), (32, 48, 64)),
                                            ((33, 17, 64), (64, 32, 64))])
def test_one_window_is_monais_sliding_window(shape, roi):
    from monai.inferers import sliding_window_inference

    from BrainMetSegLib.architectures import build_network

    torch.manual_seed(0)
    net = build_network("BasicUNet", 2, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()
    seen = []

    def predictor(batch):
        seen.append(tuple(batch.shape))
        return net(batch).float().contiguous()

    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 2, *shape)).astype(np.float32))
    with torch.inference_mode():
        ref = sliding_window_inference(x, roi, 1, predictor, overlap=0.0, mode="constant",
                                       padding_mode="constant", cval=0.0)
        ours = one_window(predictor, x, roi)
    assert seen == [(1, 2, *roi)] * 2  # one forward each, on the same padded window
    assert ours.shape == ref.shape == (1, 1, *shape)
    assert torch.equal(torch.sigmoid(ours), torch.sigmoid(ref))


def test_openvino_cache_hit_never_builds_the_torch_network(tmp_path, volume_file):
    """From a machine's second run on (export and convolution count on disk), a one-window
    OpenVINO run neither builds the torch network nor needs it; a damaged weights file is still
    refused; the results are those of a run whose network was built."""
    import shutil

    import SimpleITK as sitk

    pytest.importorskip("openvino")
    from BrainMetSegLib import openvino_backend as ovb
    from BrainMetSegLib.errors import ModelError
    from BrainMetSegLib.lazy_network import LazyNetwork
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
    from conftest import tiny_package

    package = tiny_package(tmp_path / "tiny_lazy", name="tiny-lazy")
    config = SegmentConfig(model=str(package.folder), device="cpu", precision="fp32", brain_mask="none",
                           backend="openvino", backend_cache=str(tmp_path / "ov"), threshold=0.5)
    ovb._COMPILED.clear()
    first = Segmenter(config)
    built = first.run(str(volume_file))  # exports and counts: the network is built for that
    assert isinstance(first._lazy["main"], LazyNetwork) and first._lazy["main"].built and first._net is not None
    ovb._COMPILED.clear()  # a new process
    second = Segmenter(config)
    lazy = second.run(str(volume_file))
    assert isinstance(second._lazy["main"], LazyNetwork) and not second._lazy["main"].built and second._net is None
    assert lazy.provenance["inference_run"]["backend"]["cache"] == "hit"
    assert lazy.provenance["inference_run"]["windows"] == 1
    for a, b in ((built.probability, lazy.probability), (built.labels, lazy.labels)):
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    # torch asked for: the network is built as always
    torch_run = Segmenter(SegmentConfig(**{**config.__dict__, "backend": "torch"}))
    torch_run.run(str(volume_file))
    assert torch_run._lazy == {} and torch_run._net is not None
    # damaged weights are refused before any work, lazy or not
    damaged = tmp_path / "damaged"
    shutil.copytree(package.folder, damaged)
    weights = next(p for p in damaged.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="sha256|does not match"):
        Segmenter(SegmentConfig(**{**config.__dict__, "model": str(damaged)})).run(str(volume_file))
