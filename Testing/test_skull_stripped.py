"""Already skull-stripped input is detected and deepbet skipped; heads still get deepbet."""

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib import skullstrip
from BrainMetSegLib.preprocess import PreprocessConfig, preprocess
from BrainMetSegLib.stripped import MAX_DIP, check_skull_stripped

SPACING = (2.0, 2.0, 2.0)


def layered(axes_mm, layers, shape=(80, 96, 80), noise=0.02, air=0.0, seed=0) -> np.ndarray:
    """A (Z, Y, X) ellipsoid with semi-axes ``axes_mm`` (x, y, z) whose intensity is, from the
    outside in, each (thickness mm, intensity) of ``layers``, then 1.0 (white matter)."""
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    c = [(n - 1) / 2 for n in shape]
    s = SPACING[0]
    # approximate depth below the ellipsoid's surface (mm)
    r = np.sqrt(((xx - c[2]) * s / axes_mm[0]) ** 2 + ((yy - c[1]) * s / axes_mm[1]) ** 2
                + ((zz - c[0]) * s / axes_mm[2]) ** 2)
    depth = (1 - r) * min(axes_mm)
    img = np.where(depth > 0, 1.0, air)
    edge = 0.0
    for thickness, value in layers:
        img = np.where((depth > edge) & (depth <= edge + thickness), value, img)
        edge += thickness
    rng = np.random.default_rng(seed)
    img = img + noise * rng.normal(size=img.shape) * (img > 0)
    return img.astype(np.float32)


BRAIN = [(3.0, 0.6), (3.0, 0.8)]  # cortex, then grey/white mixing
HEAD = [(4.0, 1.2), (6.0, 0.08), (3.0, 0.25)] + BRAIN  # scalp fat, skull, CSF, brain


def image(array):
    im = sitk.GetImageFromArray(array)
    im.SetSpacing(SPACING)
    return im


def test_stripped_brain_is_recognised():
    check = check_skull_stripped(layered((65, 80, 55), BRAIN), SPACING)
    assert check.stripped, check.reason
    assert 900 < check.foreground_ml < 1500 and check.skull_dip <= MAX_DIP


def test_heads_are_not():
    # whole head: far larger than a brain
    big = check_skull_stripped(layered((90, 105, 80), HEAD, shape=(88, 110, 96)), SPACING)
    assert not big.stripped and "not brain-sized" in big.reason
    # a small head inside the brain-size range: the skull under the scalp gives it away
    small = check_skull_stripped(layered((62, 72, 55), HEAD), SPACING)
    assert 600 < small.foreground_ml < 2500
    assert not small.stripped and small.skull_dip > 0.5, small.reason
    # the same head cut by the field of view (a slab): still a head
    slab = check_skull_stripped(layered((62, 72, 55), HEAD)[25:55], SPACING)
    assert not slab.stripped
    # noisy air (never exactly 0): not stripped, whatever is inside
    noisy = check_skull_stripped(layered((65, 80, 55), BRAIN, air=0.01) + np.float32(0.0), SPACING)
    assert not noisy.stripped and "background" in noisy.reason


def test_the_ratio_holds_for_normalised_intensities():
    brain = layered((65, 80, 55), BRAIN)
    shifted = np.where(brain != 0, brain * 3 - 2.5, 0).astype(np.float32)  # negative values inside
    assert check_skull_stripped(shifted, SPACING).stripped


def test_preprocess_skips_deepbet_on_stripped_input(monkeypatch):
    calls = []

    def fake_deepbet(array, **kwargs):
        calls.append(array.shape)
        return np.asarray(array) > 0.5

    monkeypatch.setattr(skullstrip, "deepbet_mask", fake_deepbet)
    config = PreprocessConfig(spacing_mm=SPACING, brain_mask="deepbet", mask_dilation_mm=0.0)
    stripped = preprocess([image(layered((65, 80, 55), BRAIN))], config)
    assert calls == []
    run = stripped.brain_mask_run
    assert run["method"] == "none (deepbet skipped)" and run["skull_stripped_check"]["stripped"]
    assert "already skull-stripped" in run["skull_stripped_check"]["reason"]
    head = preprocess([image(layered((62, 72, 55), HEAD))], config)
    assert len(calls) == 1 and head.brain_mask_run["method"] == "deepbet"
    assert not head.brain_mask_run["skull_stripped_check"]["stripped"]
    # the check can be switched off: deepbet runs on the stripped brain too
    forced = preprocess([image(layered((65, 80, 55), BRAIN))],
                        PreprocessConfig(spacing_mm=SPACING, detect_stripped=False))
    assert len(calls) == 2 and forced.brain_mask_run["method"] == "deepbet"


@pytest.mark.parametrize("method", ["none"])
def test_other_methods_are_recorded(method):
    pre = preprocess([image(layered((65, 80, 55), BRAIN))], PreprocessConfig(spacing_mm=SPACING, brain_mask=method))
    assert pre.brain_mask_run == {"method_requested": method, "method": method}
