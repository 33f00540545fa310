"""The segmentation pipeline end to end in Python: geometry round trips, sliding window, models."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BrainMetSegLib.errors import ModelError
from BrainMetSegLib.inference import InferenceConfig, count_windows, predict
from BrainMetSegLib.models import load_package
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from conftest import make_volume


class BrightNet(torch.nn.Module):
    """A 'network' whose logit rises with intensity: lesions = the bright blobs of the input."""

    def forward(self, x):
        return 4.0 * (x[:, :1] - 3.0)


def rotation(axis, degrees):
    return tuple(sitk.VersorTransform(axis, np.deg2rad(degrees)).GetMatrix())


def with_sphere(image: sitk.Image, centre_lps, radius_mm=4.0, value=300.0) -> sitk.Image:
    """Paint a bright sphere at a physical LPS point into a copy of ``image``."""
    arr = sitk.GetArrayFromImage(image)
    kji = np.indices(arr.shape).reshape(3, -1).T
    d = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    lps = np.asarray(image.GetOrigin()) + kji[:, ::-1] @ d.T
    inside = (np.linalg.norm(lps - np.asarray(centre_lps), axis=1) <= radius_mm).reshape(arr.shape)
    arr[inside] = value
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize("direction,spacing", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (1.0, 1.0, 1.0)),            # LPS
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (1.0, 1.0, 1.0)),          # RAS
    (rotation((0.3, 1.0, 0.2), 25), (1.0, 1.0, 1.0)),          # oblique
    ((1, 0, 0, 0, 0, -1, 0, 1, 0), (0.8, 1.1, 2.5)),           # coronal slices, anisotropic
])
def test_lesion_comes_out_where_it_was_put(tiny_model, tmp_path, direction, spacing):
    image = make_volume((40, 48, 56), spacing, direction, origin=(10.0, -20.0, 5.0))
    centre_index = (30, 22, 18)  # (i, j, k)
    centre_lps = np.asarray(image.TransformContinuousIndexToPhysicalPoint(centre_index))
    image = with_sphere(image, centre_lps, radius_mm=5.0)
    path = tmp_path / "case.nii.gz"
    sitk.WriteImage(image, str(path))

    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none"),
                    network=BrightNet())
    result = seg.run(str(path))

    assert result.n_lesions == 1
    row = result.table[0]
    ras = np.array([row["centroid_r"], row["centroid_a"], row["centroid_s"]])
    assert np.allclose(ras, centre_lps * [-1, -1, 1], atol=0.75 * max(spacing)), (ras, centre_lps)
    assert abs(row["centroid_i"] - centre_index[0]) <= 1
    assert abs(row["centroid_j"] - centre_index[1]) <= 1
    assert abs(row["centroid_k"] - centre_index[2]) <= 1
    labels = result.labels
    assert labels.GetSize() == image.GetSize()
    assert np.allclose(labels.GetDirection(), image.GetDirection())
    assert np.allclose(labels.GetOrigin(), image.GetOrigin())
    assert labels[centre_index] == 1
    assert row["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 125, rel=0.25)


def test_sliding_window_equals_whole_volume_when_it_fits_one_window():
    torch.manual_seed(0)
    from BrainMetSegLib.architectures import build_network

    net = build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 32)).astype(np.float32)
    prob = predict(net, x, InferenceConfig(patch_size=(32, 32, 32), device="cpu", precision="fp32"))
    with torch.no_grad():
        whole = torch.sigmoid(net(torch.from_numpy(x)[None]))[0, 0].numpy()
    np.testing.assert_allclose(prob, whole, atol=1e-5)


def test_overlapping_windows_average_and_are_counted():
    events = []
    net = BrightNet()
    x = np.random.default_rng(0).normal(size=(1, 40, 50, 60)).astype(np.float32)
    config = InferenceConfig(patch_size=(32, 32, 32), overlap=0.5, device="cpu")
    prob = predict(net, x, config, progress=events.append)
    # the net is pointwise, so averaging identical overlapping predictions changes nothing
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-4 * (x[0] - 3))), atol=1e-5)
    assert len(events) == count_windows((40, 50, 60), (32, 32, 32), 0.5) == 2 * 3 * 3


def test_cancel_between_windows():
    import threading

    from BrainMetSegLib.errors import CancelledError

    cancel = threading.Event()

    def progress(event):
        cancel.set()  # cancel after the first window

    x = np.zeros((1, 64, 64, 64), np.float32)
    with pytest.raises(CancelledError):
        predict(BrightNet(), x, InferenceConfig(patch_size=(32, 32, 32), device="cpu"), progress, cancel)


def test_tampered_weights_are_refused(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "pkg"
    shutil.copytree(tiny_model.folder, folder)
    weights = folder / tiny_model.card.weights
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_package(folder).load_network()


def test_incomplete_or_unknown_packages_are_refused(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "pkg"
    shutil.copytree(tiny_model.folder, folder)
    (folder / tiny_model.card.weights).unlink()
    with pytest.raises(ModelError, match="missing"):
        load_package(folder).load_network()
    card = json.loads((folder / "model.json").read_text())
    card["architecture"] = "NoSuchNet"
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unknown architecture"):
        load_package(folder)
    with pytest.raises(ModelError, match="unknown model"):
        load_package("no-such-model")


def test_weights_round_trip_without_pickle(tiny_model):
    net = tiny_model.load_network()
    assert not net.training
    from safetensors import safe_open

    with safe_open(str(tiny_model.weights_path), "pt") as fh:
        assert set(fh.keys()) == set(net.state_dict())


def test_brain_mask_gates_predictions_outside_the_dilated_mask(tiny_model, tmp_path):
    image = make_volume((40, 48, 56))
    outside = (50, 24, 20)  # i, j, k outside the mask below
    inside = (25, 24, 20)
    for idx in (outside, inside):
        image = with_sphere(image, image.TransformIndexToPhysicalPoint(idx), 3.0)
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    arr = sitk.GetArrayFromImage(mask)
    arr[:, :, 10:40] = 1
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "img.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu",
                                  brain_mask=str(tmp_path / "mask.nii.gz"), mask_dilation_mm=3.0),
                    network=BrightNet())
    result = seg.run(str(tmp_path / "img.nii.gz"))
    assert result.n_lesions == 1
    assert result.labels[inside] == 1 and result.labels[outside] == 0


def test_run_images_segments_in_memory_like_run_from_a_file(tiny_model, tmp_path):
    from BrainMetSegLib.errors import InputError
    from BrainMetSegLib.progress import ProgressEvent

    image = with_sphere(make_volume((40, 48, 56)), (28.0, 24.0, 20.0), 4.0)
    before = sitk.GetArrayFromImage(image).copy()
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none"),
                    network=BrightNet())
    events: list[ProgressEvent] = []
    result = seg.run_images([image], "memory-case", events.append)
    assert result.case_id == "memory-case" and result.n_lesions == 1
    assert {"preprocess", "inference", "postprocess"} <= set(result.timings_s)
    assert {e.stage for e in events} >= {"preprocess", "inference", "postprocess"}
    assert np.array_equal(sitk.GetArrayFromImage(image), before)  # input untouched
    sitk.WriteImage(image, str(tmp_path / "case.nii.gz"))
    from_file = seg.run(str(tmp_path / "case.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(from_file.labels), sitk.GetArrayFromImage(result.labels))
    with pytest.raises(InputError, match="memory-case: model tiny-test takes 1 image"):
        seg.run_images([image, image], "memory-case")
    flat = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    with pytest.raises(InputError, match="memory-case: the CE-T1 image is constant"):
        seg.run_images([flat], "memory-case")


@pytest.mark.parametrize("name,args,good,bad", [
    ("FlexibleUNet", {"backbone": "resnet10_w16"}, 32, 48),
    ("SegResNet", {"init_filters": 8}, 16, 12),
])
def test_patch_sizes_must_suit_the_architecture(name, args, good, bad, tiny_model, tmp_path):
    """architectures.SIZE_DIVISOR is what the networks need (a forward pass says so), and a card
    or option with a patch they cannot take is refused before any work."""
    import shutil

    from BrainMetSegLib.architectures import build_network, patch_size_problem

    net = build_network(name, 1, 1, args).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, good, good, good)).shape[-3:] == (good,) * 3
        with pytest.raises(RuntimeError):
            net(torch.zeros(1, 1, bad, bad, bad))
    assert patch_size_problem(name, [good] * 3, args) is None
    assert "multiple of" in patch_size_problem(name, [good, good, bad], args)
    assert patch_size_problem("BasicUNet", [40, 41, 33]) is None  # it pads odd sizes itself

    folder = tmp_path / "pkg"
    shutil.copytree(tiny_model.folder, folder)
    card = json.loads((folder / "model.json").read_text())
    card.update(architecture=name, architecture_args=args, patch_size=[good, good, bad])
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"patch_size'?: {name} needs every patch dimension to be a multiple"):
        load_package(folder)
