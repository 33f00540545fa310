"""Co-registration of extra sequences and the device fallbacks of inference."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BrainMetSegLib import inference
from BrainMetSegLib.coregister import onto_ce_t1, overlap_fraction, register_rigid
from BrainMetSegLib.errors import NotEnoughMemoryError
from BrainMetSegLib.inference import InferenceConfig, predict
from conftest import make_volume


def mni_2mm() -> sitk.Image:
    """nilearn's MNI152 T1 (real anatomy, ships inside the package) at 2 mm."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=2)
    image = sitk.GetImageFromArray(np.asarray(img.get_fdata(), np.float32).transpose(2, 1, 0).copy())
    image.SetSpacing(tuple(float(z) for z in img.header.get_zooms()[:3]))
    assert isinstance(img, nib.Nifti1Image)
    return image


def test_misaligned_sequence_is_registered_back():
    fixed = mni_2mm()
    centre = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    truth = sitk.Euler3DTransform(centre, 0.06, -0.05, 0.1, (4.0, -3.0, 2.5))
    # the "FLAIR": same anatomy, rotated and shifted, on a coarser grid, white/grey contrast inverted
    moving = sitk.Resample(fixed, fixed, truth, sitk.sitkLinear, 0.0)
    moving = sitk.Resample(moving, [60, 70, 60], sitk.Transform(), sitk.sitkLinear, moving.GetOrigin(),
                           (3.0, 3.0, 3.0), fixed.GetDirection(), 0.0)
    m = sitk.Cast(sitk.RescaleIntensity(moving, 0, 1000), sitk.sitkFloat32)
    moving = sitk.Multiply(m, sitk.Cast(1.5 - m / 1000.0, sitk.sitkFloat32))  # peaks at 750

    found = register_rigid(fixed, moving)
    expected = truth.GetInverse()
    arr = sitk.GetArrayFromImage(fixed)
    brain = np.argwhere(arr > np.percentile(arr, 60))[::400, ::-1]
    points = [fixed.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in brain]
    error = [np.linalg.norm(np.subtract(found.TransformPoint(p), expected.TransformPoint(p))) for p in points]
    before = [np.linalg.norm(np.subtract(p, expected.TransformPoint(p))) for p in points]
    assert np.max(error) < 1.0, np.max(error)       # mm, on a 2-3 mm grid
    assert np.mean(before) > 3.0


def test_same_grid_sequence_is_used_as_is():
    image = make_volume()
    out = onto_ce_t1(image, image, "T1")
    assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(image))


def test_overlap_fraction():
    a = make_volume()
    assert overlap_fraction(a, a) == pytest.approx(1.0)
    assert overlap_fraction(a, make_volume(origin=(1000.0, 0, 0))) == 0.0


class Pointwise(torch.nn.Module):
    def forward(self, x):
        return x[:, :1]


def test_cuda_out_of_memory_falls_back_to_cpu(monkeypatch):
    calls = []

    def fake_run(net, array, config, device, batch, progress, cancel, forward=None, mirror="none"):
        calls.append((device, batch))
        if device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return np.zeros(array.shape[1:], np.float32)

    monkeypatch.setattr(inference, "resolve_device", lambda d: "cuda")
    monkeypatch.setattr(inference, "_run", fake_run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(RuntimeWarning, match="retrying on cpu"):
        out = predict(Pointwise(), np.zeros((1, 8, 8, 8), np.float32), InferenceConfig(sw_batch_size=2))
    assert calls == [("cuda", 2), ("cuda", 1), ("cpu", 1)]
    assert out.shape == (8, 8, 8)


def test_out_of_memory_everywhere_is_a_clear_error(monkeypatch):
    def fake_run(*args):
        raise MemoryError()

    monkeypatch.setattr(inference, "_run", fake_run)
    with pytest.raises(NotEnoughMemoryError, match="out of memory"):
        predict(Pointwise(), np.zeros((1, 8, 8, 8), np.float32), InferenceConfig(device="cpu"))


def test_cuda_requested_without_cuda_is_refused(monkeypatch):
    from BrainMetSegLib.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA"):
        inference.resolve_device("cuda")
    assert inference.resolve_device("auto") == "cpu"


def test_bf16_autocast_stays_close_to_fp32():
    from BrainMetSegLib.architectures import build_network

    torch.manual_seed(0)
    net = build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 32)).astype(np.float32)
    fp32 = predict(net, x, InferenceConfig(patch_size=(32, 32, 32), device="cpu", precision="fp32"))
    bf16 = predict(net, x, InferenceConfig(patch_size=(32, 32, 32), device="cpu", precision="bf16"))
    assert np.abs(fp32 - bf16).max() < 0.05
