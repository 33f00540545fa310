"""Whole-volume vs windowed inference, the memory plan, and the CPU-dependent precision choice."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BrainMetSegLib import precision
from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.inference import (
    InferenceConfig,
    count_windows,
    padded_shape,
    plan_windows,
    predict,
)
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from BrainMetSegLib.precision import CpuFeatures, choose_precision


def features(flags, mkldnn=True, isa=""):
    return CpuFeatures(model="test CPU", flags=tuple(flags), mkldnn_bf16=mkldnn, onednn_max_isa=isa, threads=2)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()


def test_auto_precision_follows_the_cpu():
    bf16_cpu = features(["avx2", "avx512f", "avx512_bf16"])
    choice = choose_precision("auto", "cpu", bf16_cpu)
    assert (choice.autocast, choice.channels_last) == ("bf16", True)
    assert "avx512_bf16" in choice.reason
    assert choose_precision("auto", "cpu", features(["avx2", "amx_bf16"])).autocast == "bf16"
    # AVX2 only, or bf16 flags that oneDNN cannot use, or capped by ONEDNN_MAX_CPU_ISA: fp32
    assert choose_precision("auto", "cpu", features(["avx2", "fma"])).autocast == "fp32"
    assert choose_precision("auto", "cpu", features(["avx512_bf16"], mkldnn=False)).autocast == "fp32"
    capped = choose_precision("auto", "cpu", features(["avx512_bf16"], isa="AVX2"))
    assert capped.autocast == "fp32" and "ONEDNN_MAX_CPU_ISA=AVX2" in capped.reason
    assert choose_precision("auto", "cpu", features(["avx512_bf16"], isa="AVX512_CORE_AMX")).autocast == "bf16"
    # explicit choices are obeyed; CUDA keeps fp16 autocast for auto
    assert choose_precision("fp32", "cpu", bf16_cpu).autocast == "fp32"
    assert "emulated" in choose_precision("bf16", "cpu", features(["avx2"])).reason
    assert choose_precision("auto", "cuda").autocast == "fp16"
    with pytest.raises(ValueError):
        choose_precision("fp8", "cpu", bf16_cpu)


def test_cpuinfo_is_parsed(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test EPYC\nflags\t\t: fpu avx2 avx512_bf16 sse\n\n"
                    "processor\t: 1\nmodel name\t: Test EPYC\nflags\t\t: fpu avx2 avx512_bf16 sse\n")
    model, flags = precision._cpuinfo(str(info))
    assert model == "Test EPYC" and {"avx2", "avx512_bf16"} <= flags
    assert precision._cpuinfo(str(tmp_path / "absent")) == ("", set())
    real = precision.cpu_features()
    assert set(real.flags) <= set(precision.REPORTED_FLAGS) and "native_bf16" in real.as_dict()


def test_plan_is_whole_when_it_fits_else_the_largest_windows(unet):
    config = InferenceConfig(device="cpu", precision="fp32", size_divisor=16, memory_budget_mb=1000.0,
                             patch_size=(16, 16, 16))
    whole = plan_windows(unet, (1, 40, 50, 60), config, "cpu")
    assert whole.mode == "whole" and whole.roi_zyx == (48, 64, 64) == padded_shape((40, 50, 60), 16)
    # a volume smaller than the card's patch is padded to the patch (x, y, z -> z, y, x)
    tiny = plan_windows(unet, (1, 5, 5, 5), InferenceConfig(
        device="cpu", precision="fp32", size_divisor=16, patch_size=(32, 48, 16)), "cpu")
    assert tiny.mode == "whole" and tiny.roi_zyx == (16, 48, 32)
    assert whole.windows == 1 and whole.bytes_per_voxel > 0
    # a budget too small for the whole volume: windows, multiples of 16, within budget, covering it
    budget_mb = whole.estimated_mib / 3
    small = plan_windows(unet, (1, 40, 50, 60), InferenceConfig(
        device="cpu", precision="fp32", size_divisor=16, memory_budget_mb=budget_mb,
        patch_size=(16, 16, 16)), "cpu")
    assert small.mode == "windows" and small.windows > 1
    assert all(r % 16 == 0 for r in small.roi_zyx)
    assert small.estimated_mib <= budget_mb
    # never smaller than the paper's patch: with a 32^3 patch nothing fits, so that patch is used
    floor = plan_windows(unet, (1, 40, 50, 60), InferenceConfig(
        device="cpu", precision="fp32", size_divisor=16, memory_budget_mb=0.001,
        patch_size=(32, 32, 32)), "cpu")
    assert floor.mode == "windows" and floor.roi_zyx == (32, 32, 32)
    assert small.windows == count_windows((40, 50, 60), small.roi_zyx, small.overlap)
    # whole is obeyed whatever the budget; paper uses the card's patch and overlap
    forced = plan_windows(unet, (1, 40, 50, 60), InferenceConfig(
        mode="whole", device="cpu", size_divisor=16, memory_budget_mb=1.0, patch_size=(16, 16, 16)), "cpu")
    assert forced.mode == "whole"
    paper = plan_windows(unet, (1, 40, 50, 60), InferenceConfig(
        mode="paper", patch_size=(32, 32, 16), device="cpu"), "cpu")
    assert paper.roi_zyx == (16, 32, 32) and paper.windows == count_windows((40, 50, 60), (16, 32, 32), 0.5)
    # bf16 needs less memory per voxel than fp32
    bf16 = plan_windows(unet, (1, 40, 50, 60), InferenceConfig(precision="bf16", size_divisor=16), "cpu")
    assert bf16.bytes_per_voxel < whole.bytes_per_voxel


def test_whole_mode_is_one_forward_of_the_padded_volume(unet):
    x = np.random.default_rng(2).normal(size=(1, 20, 26, 30)).astype(np.float32)
    info = {}
    prob = predict(unet, x, InferenceConfig(mode="whole", device="cpu", precision="fp32", size_divisor=16,
                                                patch_size=(16, 16, 16)),
                   info=info)
    assert info["mode"] == "whole" and info["windows"] == 1 and info["roi_xyz"] == [32, 32, 32]
    padded = np.zeros((1, 32, 32, 32), np.float32)  # MONAI pads symmetrically (extra voxel at the end)
    padded[:, 6:26, 3:29, 1:31] = x
    with torch.no_grad():
        direct = torch.sigmoid(unet(torch.from_numpy(padded)[None]))[0, 0].numpy()
    np.testing.assert_allclose(prob, direct[6:26, 3:29, 1:31], atol=1e-5)


def test_large_windows_agree_with_whole_for_a_pointwise_net():
    class Bright(torch.nn.Module):
        def forward(self, x):
            return 4.0 * (x[:, :1] - 1.0)

    x = np.random.default_rng(3).normal(size=(1, 40, 50, 60)).astype(np.float32)
    info = {}
    windows = predict(Bright(), x, InferenceConfig(device="cpu", bytes_per_voxel=1000.0, memory_budget_mb=0.05,
                                                   size_divisor=16, patch_size=(16, 16, 16)), info=info)
    assert info["mode"] == "windows" and info["windows"] > 1
    np.testing.assert_allclose(windows, 1 / (1 + np.exp(-4 * (x[0] - 1))), atol=1e-5)


def test_run_json_records_mode_precision_and_cpu(tiny_model, volume_file):
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none"))
    result = seg.run(str(volume_file))
    run = result.provenance["inference_run"]
    assert run["mode"] == "whole" and run["mode_requested"] == "auto" and run["device"] == "cpu"
    assert run["precision"]["autocast"] in ("fp32", "bf16") and run["precision"]["reason"]
    assert run["budget_mib"] > 0 and run["budget_source"]  # from the memory available
    assert result.provenance["brain_mask_run"]["method"] == "none"
    assert result.provenance["cpu"]["native_bf16"] in (True, False)
    assert result.provenance["settings"]["inference"]["size_divisor"] == 16
    # deepbet follows the precision choice: bf16 exactly when inference uses bf16
    assert seg.preprocess_config.deepbet_bf16 == (run["precision"]["autocast"] == "bf16")
    paper = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none",
                                    inference_mode="paper", precision="fp32")).run(str(volume_file))
    assert paper.provenance["inference_run"]["mode"] == "paper"
    # the tiny net's whole-volume and windowed maps give the same lesions here
    a, b = (sitk.GetArrayFromImage(r.labels) > 0 for r in (result, paper))
    assert (a == b).mean() > 0.99


def test_deepbet_runs_under_bf16_autocast_only_when_asked(monkeypatch):
    from BrainMetSegLib import skullstrip

    seen = []

    class FakeBet:
        model = torch.nn.Conv3d(1, 2, 3)

        def run_model(self, x, shape=(256, 256, 256)):
            assert shape == (skullstrip.DEEPBET_GRID,) * 3  # the smaller grid, both paths
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
            return (x > 0).astype(np.float32)

        def postprocess(self, mask):
            return mask

    monkeypatch.setattr(skullstrip, "_deepbet", lambda device: FakeBet())
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1:3, 1:4, 2:5] = 1
    info = {}
    plain = skullstrip.deepbet_mask(arr, info=info)
    fast = skullstrip.deepbet_mask(arr, bf16=True)
    assert seen == [False, True]
    assert info == {"deepbet_grid": skullstrip.DEEPBET_GRID} and skullstrip.DEEPBET_GRID == 224  # run.json's record
    np.testing.assert_array_equal(plain, arr > 0)  # orientation round trip
    np.testing.assert_array_equal(fast, plain)


def test_whole_forward_pads_only_to_the_next_multiple_of_the_divisor(unet):
    """The demo card's geometry (divisor 32, patch 128 x 160 x 128): a brain-sized crop is padded
    to the next multiple of 32 on each axis and no further; the patch is a floor for small
    volumes, not a rounding step (crops measured in docs/speed.md, benchmarks/bench_forward_shape.py)."""
    config = InferenceConfig(mode="whole", device="cpu", size_divisor=32, patch_size=(128, 160, 128),
                             bytes_per_voxel=1.0)
    for crop, forward in (((191, 227, 183), (192, 256, 192)),  # the bench's Colin27 head
                          ((189, 228, 196), (192, 256, 224)),  # the bundled sample
                          ((194, 224, 178), (224, 224, 192)),  # a phantom with Y a multiple already
                          ((100, 150, 100), (128, 160, 128))):  # smaller than the patch
        assert plan_windows(unet, (1, *crop), config, "cpu").roi_zyx == forward
    for crop in np.random.default_rng(0).integers(160, 260, size=(20, 3)):
        roi = plan_windows(unet, (1, *crop.tolist()), config, "cpu").roi_zyx
        assert all(r % 32 == 0 and 0 <= r - c < 32 for r, c in zip(roi, crop, strict=True)), (crop, roi)


def test_flexible_unet_cannot_be_padded_less_than_its_divisor():
    """FlexibleUNet's divisor (32) is the smallest that runs: a side that is a multiple of 16 but
    not of 32 fails in the decoder (upsampled and skip features differ in size), so a whole
    forward of the demo network cannot be padded any less (docs/speed.md)."""
    from BrainMetSegLib.architectures import size_divisor

    args = {"backbone": "resnet10_w16", "dropout": 0.0, "decoder_channels": [32, 16, 16, 8, 8]}
    net = build_network("FlexibleUNet", 1, 1, args).eval()
    assert size_divisor("FlexibleUNet", args) == 32
    with torch.inference_mode():
        assert tuple(net(torch.zeros(1, 1, 64, 96, 32)).shape[2:]) == (64, 96, 32)
        with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
            net(torch.zeros(1, 1, 64, 80, 32))
