"""The OpenVINO backend: the choice (auto/torch/openvino), agreement with torch, the on-disk
cache (hit, miss, tampered -> rebuilt, unwritable -> in memory) and the pipeline's record.

Tiny networks only: each conversion costs seconds, so the tests share them where they can."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib import openvino_backend as ovb
from BrainMetSegLib.backends import choose_backend, openvino_problem
from BrainMetSegLib.errors import ModelError, OptionError
from BrainMetSegLib.inference import InferenceConfig, plan_windows, predict
from BrainMetSegLib.options import Backend

ov = pytest.importorskip("openvino")
torch = pytest.importorskip("torch")


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-np.asarray(a, np.float64)))


@pytest.fixture
def no_openvino(monkeypatch):
    """``import openvino`` fails, as where it is not installed."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    ovb._COMPILED.clear()


def test_choice_follows_device_precision_and_availability():
    assert choose_backend("auto", "cpu", "fp32", problem="").used == Backend.OPENVINO
    # bf16: OpenVINO where the CPU computes it natively; elsewhere it would quietly run fp32
    native = choose_backend("auto", "cpu", "bf16", problem="", native_bf16=True)
    assert native.used == Backend.OPENVINO and "bf16" in native.reason
    emulated = choose_backend("auto", "cpu", "bf16", problem="", native_bf16=False)
    assert emulated.used == Backend.TORCH and "without native bf16" in emulated.reason
    assert choose_backend("openvino", "cpu", "bf16", problem="", native_bf16=True).used == Backend.OPENVINO
    assert choose_backend("auto", "cuda", "fp16", problem="").used == Backend.TORCH
    no_id = choose_backend("auto", "cpu", "fp32", has_identity=False, problem="")
    assert no_id.used == Backend.TORCH and "identity" in no_id.reason
    missing = choose_backend("auto", "cpu", "fp32", problem="openvino does not import (ImportError: x)")
    assert missing.used == Backend.TORCH and "does not import" in missing.reason
    assert choose_backend("torch", "cpu", "fp32", problem="").used == Backend.TORCH
    assert choose_backend("openvino", "cpu", "fp32", problem="").used == Backend.OPENVINO
    for device, autocast, problem, said in (("cuda", "fp16", "", "CPU only"),
                                            ("cpu", "bf16", "", "bf16 only on a CPU with native bf16"),
                                            ("cpu", "fp32", "openvino does not import", "does not import")):
        with pytest.raises(OptionError, match=said):
            choose_backend("openvino", device, autocast, problem=problem, native_bf16=False)
    with pytest.raises(ValueError):
        choose_backend("onnx", "cpu", "fp32", problem="")
    from BrainMetSegLib.pipeline import SegmentConfig

    assert SegmentConfig(backend="openvino").backend is Backend.OPENVINO
    with pytest.raises(OptionError, match="--backend 'onnx' is not one of auto, torch, openvino"):
        SegmentConfig(backend="onnx")
    with pytest.raises(OptionError, match="--backend-cache must be a folder"):
        SegmentConfig(backend_cache=" ")


def test_unimportable_openvino_degrades_to_torch(no_openvino, tiny_model, volume_file):
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    assert "does not import" in openvino_problem()
    result = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", precision="fp32",
                                     brain_mask="none")).run(str(volume_file))
    backend = result.provenance["inference_run"]["backend"]
    assert backend["asked"] == "auto" and backend["used"] == "torch" and "does not import" in backend["reason"]
    with pytest.raises(OptionError, match="--backend openvino: openvino does not import"):
        Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", precision="fp32",
                                backend="openvino", brain_mask="none"))


@pytest.fixture(scope="module")
def flexible_unet():
    """A tiny FlexibleUNet (MONAI ResNet-10 encoder: type-A shortcuts, which plain tracing freezes)."""
    from BrainMetSegLib.architectures import build_network

    torch.manual_seed(0)
    return build_network("FlexibleUNet", 1, 1, {"backbone": "resnet10_w16", "dropout": 0.0,
                                               "decoder_channels": [32, 16, 16, 8, 8]}).eval()


def test_forward_agrees_with_torch_at_other_sizes(flexible_unet, tmp_path):
    ovb._COMPILED.clear()
    forward, record = ovb.openvino_forward(flexible_unet, 1, 32, {"test": "flexible"}, tmp_path)
    assert record["cache"] == "miss" and record["check"]["max_abs_probability_difference"] <= 1e-3
    for shape, scale in (((1, 1, 64, 96, 64), 1.0), ((2, 1, 96, 64, 32), 2.0)):  # not the traced 32x32x64
        x = torch.randn(*shape) * scale + 1
        with torch.inference_mode():
            ref = flexible_unet(x).numpy()
        out = forward(x).numpy()
        assert out.shape == ref.shape
        diff = float(np.abs(_sigmoid(out) - _sigmoid(ref)).max())
        assert diff < 1e-4, diff  # measured ~1e-6 (logits ~3e-6 apart)
        assert np.abs(out - ref).max() <= 1e-3 * float(ref.max() - ref.min())
    # the cache key holds no input shape, rightly: the network on disk is dynamic in batch and
    # space, so every case's crop (its own size, docs/speed.md) reuses the one export
    folder = tmp_path / record["cache_folder"].rsplit("/", 1)[1]
    model, _, why = ovb.read_cached(folder, folder.name)
    assert why == "" and [d.is_dynamic for d in model.inputs[0].get_partial_shape()] == [True, False, True, True, True]


def _tiny_ov_model():
    try:
        from openvino import opset13 as ops
    except ImportError:  # OpenVINO before 2024: opsets under openvino.runtime
        from openvino.runtime import opset13 as ops

    x = ops.parameter([1, 1, -1, -1, -1], np.float32, name="x")
    return ov.Model([ops.relu(x)], [x], "relu")


def test_forward_results_are_the_callers_own():
    """The forward neither copies twice nor shares OpenVINO's buffers: a result stays as it was
    after the next call, and the input is read, never written."""
    forward = ovb._Forward(ovb.compile_model(_tiny_ov_model(), 1))
    a_in, b_in = torch.randn(1, 1, 8, 8, 8), torch.randn(1, 1, 8, 8, 8)
    a_before = a_in.clone()
    a = forward(a_in)
    a_kept = a.clone()
    b = forward(b_in)
    assert torch.equal(a, a_kept) and torch.equal(a, torch.relu(a_before)) and torch.equal(b, torch.relu(b_in))
    assert torch.equal(a_in, a_before)
    assert not np.shares_memory(a.numpy(), b.numpy())
    assert not np.shares_memory(b.numpy(), forward.request.get_output_tensor(0).data)


def test_cache_files_are_checked(tmp_path):
    folder = tmp_path / "k1"
    assert ovb.write_cached(_tiny_ov_model(), folder, {"key": "k1", "check": {"ok": 1}}) == ""
    meta = json.loads((folder / ovb.META).read_text())
    assert set(meta["files"]) == {ovb.MODEL_XML, ovb.MODEL_BIN} and meta["check"] == {"ok": 1}
    model, meta2, why = ovb.read_cached(folder, "k1")
    assert model is not None and why == "" and meta2["key"] == "k1"
    assert ovb.read_cached(folder, "k2")[2].startswith(f"{ovb.META} holds key")
    assert ovb.read_cached(tmp_path / "absent", "k1")[2] == "not cached"
    (folder / ovb.MODEL_XML).write_text((folder / ovb.MODEL_XML).read_text().replace("relu", "Relu"))
    model, _, why = ovb.read_cached(folder, "k1")
    assert model is None and "does not match the sha256" in why
    (tmp_path / "a_file").write_text("")
    why = ovb.write_cached(_tiny_ov_model(), tmp_path / "a_file" / "k1", {"key": "k1"})
    assert why and not (tmp_path / "a_file" / "k1").exists()


def test_cache_hit_rebuild_and_unwritable(tiny_model, tmp_path, monkeypatch):
    net = tiny_model.load_network("cpu")
    converted = []  # one conversion serves the three exports below (it is what takes seconds)
    real_export = ovb.export
    monkeypatch.setattr(ovb, "export", lambda *args: (converted or [converted.append(real_export(*args))]
                                                      and converted)[0].clone())
    identity = tiny_model.network_identity()
    x = torch.randn(1, 1, 48, 32, 64)
    with torch.inference_mode():
        ref = net(x).numpy()
    ovb._COMPILED.clear()
    _, first = ovb.openvino_forward(net, 1, 16, identity, tmp_path / "cache")
    ovb._COMPILED.clear()
    forward, second = ovb.openvino_forward(net, 1, 16, identity, tmp_path / "cache")
    assert (first["cache"], second["cache"], second["export_s"]) == ("miss", "hit", 0.0)
    assert second["check"] == first["check"] and second["cache_folder"] == first["cache_folder"]
    assert np.abs(_sigmoid(forward(x).numpy()) - _sigmoid(ref)).max() < 1e-4
    assert ovb.openvino_forward(net, 1, 16, identity, tmp_path / "cache")[1]["cache"] == "process"
    weights = tmp_path / "cache" / first["cache_folder"].rsplit("/", 1)[1] / ovb.MODEL_BIN
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged weight: never trusted
    weights.write_bytes(bytes(data))
    ovb._COMPILED.clear()
    with pytest.warns(RuntimeWarning, match="does not match the sha256"):
        forward, third = ovb.openvino_forward(net, 1, 16, identity, tmp_path / "cache")
    assert third["cache"] == "rebuilt" and "model.bin" in third["rebuilt_because"]
    assert ovb.read_cached(weights.parent, weights.parent.name)[2] == ""  # rebuilt whole
    assert np.abs(_sigmoid(forward(x).numpy()) - _sigmoid(ref)).max() < 1e-4
    (tmp_path / "a_file").write_text("")
    ovb._COMPILED.clear()
    with pytest.warns(RuntimeWarning, match="cannot write the OpenVINO cache"):
        forward, fourth = ovb.openvino_forward(net, 1, 16, identity, tmp_path / "a_file")
    assert fourth["cache"] == "not written"
    assert np.abs(_sigmoid(forward(x).numpy()) - _sigmoid(ref)).max() < 1e-4


def test_a_disagreeing_export_is_refused(tiny_model, tmp_path, monkeypatch):
    net = tiny_model.load_network("cpu")
    monkeypatch.setattr(ovb, "export", lambda *args: _tiny_ov_model())  # a wrong network of the right shape
    ovb._COMPILED.clear()
    x = np.random.default_rng(0).normal(size=(1, 40, 40, 40)).astype(np.float32)
    config = InferenceConfig(device="cpu", precision="fp32", size_divisor=16, patch_size=(32, 32, 32),
                             backend="openvino", backend_cache=str(tmp_path))
    with pytest.raises(ModelError, match="disagrees with torch"):
        predict(net, x, config, network_id={"test": "refused"})
    info: dict = {}
    with pytest.warns(RuntimeWarning, match="Running torch instead"):
        prob = predict(net, x, InferenceConfig(**{**config.__dict__, "backend": "auto"}), info=info,
                       network_id={"test": "refused"})
    assert info["backend"]["used"] == "torch" and "disagrees" in info["backend"]["reason"]
    torch_prob = predict(net, x, InferenceConfig(**{**config.__dict__, "backend": "torch"}))
    assert np.array_equal(prob, torch_prob)
    assert not any(tmp_path.iterdir())  # nothing cached


def test_plan_uses_openvinos_memory_factor(tiny_model):
    from BrainMetSegLib.backends import BackendChoice

    net = tiny_model.load_network("cpu")
    config = InferenceConfig(device="cpu", precision="fp32", size_divisor=16)
    torch_plan = plan_windows(net, (1, 40, 50, 60), config, "cpu")
    ov_plan = plan_windows(net, (1, 40, 50, 60), config, "cpu",
                           BackendChoice(Backend.AUTO, Backend.OPENVINO, "test"))
    assert ov_plan.bytes_per_voxel == pytest.approx(torch_plan.bytes_per_voxel * 0.6, rel=0.01)
    assert ov_plan.backend.used == Backend.OPENVINO and torch_plan.backend.used == Backend.TORCH


def test_pipeline_same_lesions_and_recorded(tiny_model, volume_file, tmp_path):
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    ovb._COMPILED.clear()
    results = {}
    for backend in ("torch", "openvino", "auto"):
        config = SegmentConfig(model=str(tiny_model.folder), device="cpu", precision="fp32", brain_mask="none",
                               backend=backend, threshold=0.5)
        results[backend] = Segmenter(config).run(str(volume_file))
    ref, got = results["torch"], results["openvino"]
    prob = [sitk.GetArrayFromImage(r.probability) for r in (ref, got)]
    assert np.abs(prob[0] - prob[1]).max() < 1e-4
    labels = [sitk.GetArrayFromImage(r.labels) for r in (ref, got)]
    assert ref.n_lesions == got.n_lesions > 0
    # the untrained network's probabilities sit near 0.5: a voxel may flip only at the threshold
    flipped = (labels[0] > 0) != (labels[1] > 0)
    assert flipped.sum() <= 1e-3 * (labels[0] > 0).sum() and (np.abs(prob[0][flipped] - 0.5) < 1e-4).all()
    record = got.provenance["inference_run"]["backend"]
    assert record["used"] == "openvino" and record["cache"] in ("miss", "hit", "process")
    assert {"export_s", "compile_s", "cache_folder", "check", "openvino"} <= set(record)
    auto = results["auto"].provenance["inference_run"]["backend"]
    assert auto["used"] == "openvino" and auto["cache"] == "process" and auto["reason"].startswith("auto")
    assert ref.provenance["inference_run"]["backend"] == {"asked": "torch", "used": "torch",
                                                          "reason": "torch as asked"}


def _cpu(native_bf16: bool):
    from BrainMetSegLib.precision import CpuFeatures

    flags = ("avx2", "fma", "avx512f") + (("avx512_bf16",) if native_bf16 else ())
    return lambda: CpuFeatures("test CPU", flags, native_bf16, "", 2)


def test_bf16_through_openvino_only_where_native(tiny_model, volume_file, monkeypatch):
    """bf16 asked of OpenVINO on a CPU without native bf16 is refused (OpenVINO would run fp32 in its
    place); on one with it, ``auto`` runs bf16 in OpenVINO, compiled with the bf16 hint from the
    IR checked in f32, and draws what torch's fp32 draws (on a CPU without native bf16, as in CI,
    OpenVINO computes the same in fp32: the test holds either way)."""
    from BrainMetSegLib import precision
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    base = dict(model=str(tiny_model.folder), device="cpu", brain_mask="none", threshold=0.5)
    monkeypatch.setattr(precision, "cpu_features", _cpu(False))
    with pytest.raises(OptionError, match="bf16 only on a CPU with native bf16"):
        Segmenter(SegmentConfig(**base, precision="bf16", backend="openvino"))
    emulated = Segmenter(SegmentConfig(**base, precision="bf16")).run(str(volume_file))
    assert emulated.provenance["inference_run"]["backend"]["used"] == "torch"
    monkeypatch.setattr(precision, "cpu_features", _cpu(True))
    ovb._COMPILED.clear()
    native = Segmenter(SegmentConfig(**base)).run(str(volume_file))
    run = native.provenance["inference_run"]
    assert run["precision"]["autocast"] == "bf16" and run["backend"]["used"] == "openvino"
    assert run["backend"]["compile_config"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert run["backend"]["check"]["max_abs_probability_difference"] < 1e-4  # the IR, checked in f32
    ref = Segmenter(SegmentConfig(**base, precision="fp32", backend="torch")).run(str(volume_file))
    prob = [sitk.GetArrayFromImage(r.probability) for r in (ref, native)]
    assert np.abs(prob[0] - prob[1]).max() < 0.05  # bf16 arithmetic: close, not equal


def test_deepbet_through_openvino_keeps_the_mask(tmp_path):
    """deepbet's brain network in OpenVINO against torch on a small head: the bundled sample (with
    skull) at 3 mm; deepbet's box finder and brain network at 64^3 instead of 128^3 / 256^3 to keep
    the test short (the grid does not change what is compared)."""
    from BrainMetSegLib import skullstrip
    from BrainMetSegLib.resources import SAMPLE_CE_T1

    sample = sitk.ReadImage(str(SAMPLE_CE_T1), sitk.sitkFloat32)
    size = [int(n * s / 3.0) for n, s in zip(sample.GetSize(), sample.GetSpacing())]
    head = sitk.GetArrayFromImage(sitk.Resample(sample, size, sitk.Transform(), sitk.sitkLinear, sample.GetOrigin(),
                                                (3.0,) * 3, sample.GetDirection()))
    bet = skullstrip._deepbet("cpu")
    ovb._COMPILED.clear()
    info: dict = {}
    ov_bet = skullstrip._with_openvino(bet, str(tmp_path), info)
    assert ov_bet is not bet and ov_bet.model is not bet.model and info["deepbet_backend"]["cache"] == "miss"
    assert info["deepbet_backend"]["check"]["max_abs_probability_difference"] <= 1e-3
    masks = [b.run_model(head.copy(), small_shape=(64,) * 3, shape=(64,) * 3) > 0.5 for b in (bet, ov_bet)]
    dice = 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum())
    assert masks[0].sum() > 0.05 * masks[0].size and dice > 0.995, dice


def test_deepbet_in_bf16_runs_through_openvino_when_the_backend_does(tmp_path):
    """With the inference's OpenVINO backend in bf16 (a CPU with native bf16), deepbet's brain network
    runs in OpenVINO's bf16 too, not torch's autocast, and keeps the mask (on a CPU without native
    bf16 OpenVINO computes it in fp32: the test holds either way). The sample at 4 mm, 64^3 grid."""
    from BrainMetSegLib import skullstrip
    from BrainMetSegLib.resources import SAMPLE_CE_T1

    sample = sitk.ReadImage(str(SAMPLE_CE_T1), sitk.sitkFloat32)
    size = [int(n * s / 4.0) for n, s in zip(sample.GetSize(), sample.GetSpacing())]
    head = sitk.GetArrayFromImage(sitk.Resample(sample, size, sitk.Transform(), sitk.sitkLinear, sample.GetOrigin(),
                                                (4.0,) * 3, sample.GetDirection()))
    ovb._COMPILED.clear()
    info: dict = {}
    ov = skullstrip.deepbet_mask(head, bf16=True, openvino=True, cache_dir=str(tmp_path), info=info, grid=64)
    ref = skullstrip.deepbet_mask(head, grid=64)
    record = info["deepbet_backend"]
    assert record["used"] == "openvino" and record["compile_config"]["INFERENCE_PRECISION_HINT"] == "bf16"
    dice = 2 * (ov & ref).sum() / (ov.sum() + ref.sum())
    assert ref.sum() > 0.05 * ref.size and dice > 0.99, dice
