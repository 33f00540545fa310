"""deepbet's run_model done faster gives deepbet's numbers: the O(n) quantile and the in-place
normalisation against torch's and deepbet's own, the whole run_model against deepbet's, and the
OpenVINO box finder used only where its box is certain."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")
pytest.importorskip("deepbet")

from deepbet.bet import BrainExtraction  # noqa: E402
from deepbet.utils import normalize  # noqa: E402

from BrainMetSegLib import deepbet_fast  # noqa: E402
from BrainMetSegLib.deepbet_fast import box_is_certain, normalize_, torch_quantile  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 3, 10, 201, 4099])
def test_quantile_by_partition_is_torchs(n):
    rng = np.random.default_rng(n)
    for trial in range(6):
        values = rng.normal(size=n).astype(np.float32) * rng.uniform(0.1, 5000)
        if trial % 2:
            values = np.round(values / 50)  # many ties, as in integer-valued scans
        x = torch.from_numpy(values.astype(np.float32).reshape(-1, 1) if trial == 3 else values.astype(np.float32))
        for q in (0.0, 0.005, 0.25, 0.5, 0.995, 1.0, 1 / 3):
            assert torch.equal(torch_quantile(x, q), x.quantile(q)), (n, trial, q)


def test_in_place_normalisation_is_deepbets():
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.gamma(2.0, 80.0, size=(40, 30, 20))).astype(np.float32))
    low, high = x.quantile(.005), x.quantile(.995)
    before = x.clone()
    assert torch.equal(normalize_(x, low, high), normalize(x, low, high))
    assert torch.equal(x, before)  # the input is not modified


@pytest.fixture(scope="module")
def head():
    """The bundled sample (with skull) at 3 mm, a small head deepbet finds a brain in."""
    from BrainMetSegLib.resources import SAMPLE_CE_T1

    sample = sitk.ReadImage(str(SAMPLE_CE_T1), sitk.sitkFloat32)
    size = [int(n * s / 3.0) for n, s in zip(sample.GetSize(), sample.GetSpacing())]
    return sitk.GetArrayFromImage(sitk.Resample(sample, size, sitk.Transform(), sitk.sitkLinear,
                                                sample.GetOrigin(), (3.0,) * 3, sample.GetDirection()))


@pytest.fixture(scope="module")
def bet():
    from BrainMetSegLib import skullstrip

    bet = skullstrip._deepbet("cpu")
    assert isinstance(bet, deepbet_fast.FastBrainExtraction)
    return bet


def test_run_model_is_deepbets(head, bet):
    """Box finder and brain network at 64^3 (deepbet's 128^3 / 256^3 would only be slower)."""
    shapes = {"small_shape": (64,) * 3, "shape": (64,) * 3}
    ref = BrainExtraction.run_model(bet, head.copy(), **shapes)
    ref_box = bet.bbox
    given = head.copy()
    fast = bet.run_model(given, **shapes)
    assert np.array_equal(given, head)  # read only: deepbet_mask hands it its array uncopied
    assert bet.bbox == ref_box and bet.box_backend == "torch"
    assert fast.dtype == ref.dtype and np.array_equal(fast, ref)
    assert 0.05 < (ref > 0.5).mean() < 0.6  # a brain was found, not an empty or full mask


def _blob(shape=(32, 32, 32), centre=(16, 16, 16), radius=8.0) -> np.ndarray:
    z, y, x = np.indices(shape)
    d = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return np.clip(1.0 - (d - radius) * 0.3 - 0.5, 0.0, 1.0).astype(np.float32)  # 0.5 at the radius


def test_box_is_certain_only_when_every_nearby_map_gives_the_same_box():
    prob = _blob()
    prob[np.abs(prob - 0.5) < 0.01] = 0.45  # no voxel near the threshold: certain
    assert box_is_certain(prob)
    # a voxel at 0.5 exactly, alone on the blob's last plane along Z: that plane's count decides
    # nothing (2 % of 32 x 32 is 20 voxels), still certain
    edge = prob.copy()
    edge[25, 16, 16] = 0.5
    assert box_is_certain(edge)
    # a whole plane at 0.5: whether it belongs to the box depends on the backend's rounding
    plane = prob.copy()
    plane[24, 10:22, 10:22] = 0.5  # touching the blob (its last plane is 23)
    assert not box_is_certain(plane)
    # two equal blobs joined by one uncertain voxel: which component is largest is uncertain
    two = np.maximum(_blob(centre=(16, 16, 8), radius=5.0), _blob(centre=(16, 16, 24), radius=5.0))
    two[np.abs(two - 0.5) < 0.01] = 0.45
    two[16, 16, 12:21] = 0.6  # a bridge from x = 12 to 20 (the blobs span 4-12 and 20-28)
    assert box_is_certain(two)  # joined for sure: one component
    two[16, 16, 16] = 0.5  # the bridge's middle: joined, or two equal blobs (largest: the first)
    assert not box_is_certain(two)
    two[16, 16, 16] = 0.3  # cut for sure: two equal components, which is the largest is ...
    two[16, 16, 17] = 0.5  # ... decided by an uncertain voxel of the bridge
    assert not box_is_certain(two)
    assert not box_is_certain(np.full((8, 8, 8), 0.2, np.float32))  # no brain at all


def test_uncertain_openvino_box_falls_back_to_torch(head, bet, monkeypatch):
    import copy

    shapes = {"small_shape": (64,) * 3, "shape": (64,) * 3}
    ref = bet.run_model(head.copy(), **shapes)
    calls = []

    def flat_half(x):  # a box finder whose every voxel sits on the threshold
        calls.append(tuple(x.shape))
        return torch.full((1, 2, *x.shape[2:]), 0.5)

    fake = copy.copy(bet)
    fake.bbox_openvino = flat_half
    assert np.array_equal(fake.run_model(head.copy(), **shapes), ref)
    assert calls == [(1, 1, 64, 64, 64)] and fake.box_backend == "torch"


def test_openvino_box_finder_gives_deepbets_box(head, bet, tmp_path):
    pytest.importorskip("openvino")
    from BrainMetSegLib import openvino_backend as ovb
    from BrainMetSegLib import skullstrip

    shapes = {"small_shape": (64,) * 3, "shape": (64,) * 3}
    ref = bet.run_model(head.copy(), **shapes)
    ref_box = bet.bbox
    forward, record = skullstrip._box_finder_openvino(bet.bbox_model, str(tmp_path))
    assert forward is not None and record["check"]["max_abs_probability_difference"] <= deepbet_fast.BOX_BAND
    fast = skullstrip.copy.copy(bet)
    fast.bbox_openvino = forward
    out = fast.run_model(head.copy(), **shapes)
    assert fast.box_backend == "openvino" and fast.bbox == ref_box and np.array_equal(out, ref)
    ovb._COMPILED.clear()
