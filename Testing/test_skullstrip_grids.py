"""Where deepbet runs on an oblique scan (issue 24): the world-axis model grid cropped to the head.

deepbet itself is replaced by a fake with its two habits that decided the masks measured on
the tilted phantoms (docs/robustness.md): it takes the array's axes for the head's (so a brain
cut off above the skull base along the array's S axis tilts with the array), and it finds the
head on the whole array, failing when the head fills little of it (it then takes in everything
above air). The real network costs ~10 s a call; the suite stays fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib import skullstrip
from BrainMetSegLib.cli import main
from BrainMetSegLib.geometry import Grid, axis_aligned_grid, field_of_view_mask, resample
from BrainMetSegLib.preprocess import PreprocessConfig, preprocess
from BrainMetSegLib.skullstrip_grids import background_level, head_box, is_oblique
from BrainMetSegLib.synth import SynthConfig, make_case
from BrainMetSegLib.synth.reacquire import Reacquisition, reacquire

SPACING = (3.0, 3.0, 3.0)
HEAD = dict(anatomy="mni152", spacing_mm=3.0, n_lesions=1, diameter_range_mm=(12.0, 14.0), deformation=0.0)


def fake_deepbet(array: np.ndarray, **kwargs) -> np.ndarray:
    """A brain mask (Z, Y, X) of a (Z, Y, X) LPS array the way deepbet behaves (module docstring)."""
    head = array > 0.1 * np.percentile(array, 99)
    labels, _ = ndimage.label(head)
    head = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    extent = [np.ptp(np.nonzero(head.any(axis=tuple(a for a in range(3) if a != k)))[0]) + 1 for k in range(3)]
    if min(e / n for e, n in zip(extent, array.shape, strict=True)) < 0.5:
        return ndimage.binary_fill_holes(ndimage.binary_dilation(head, iterations=3))  # box finder failed
    core = ndimage.binary_erosion(ndimage.binary_fill_holes(head), iterations=2)
    z = np.nonzero(core.any(axis=(1, 2)))[0]
    core[: z[0] + (z[-1] - z[0]) // 4] = False  # skull base and neck: the lowest quarter along the array's S
    return core


@pytest.fixture(scope="module")
def scans():
    case = make_case(5, SynthConfig(**HEAD))
    tilted = reacquire({"image": case.image}, Reacquisition(tilt_deg=(30.0, 30.0)))["image"]
    return case.image, tilted


def _mask_in_world(image: sitk.Image, config: PreprocessConfig, reference: Grid) -> tuple[np.ndarray, dict]:
    pre = preprocess([image], config)
    mask = pre.geometry.model_grid.image_from_array(pre.brain.astype(np.uint8))
    return sitk.GetArrayFromImage(resample(mask, reference, linear=False)) > 0, pre.brain_mask_run


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_oblique_scan_gets_the_axial_scans_mask(scans, monkeypatch):
    monkeypatch.setattr(skullstrip, "deepbet_mask", fake_deepbet)
    axial, tilted = scans
    reference = axis_aligned_grid(axial, SPACING)
    config = dict(spacing_mm=SPACING, mask_dilation_mm=0.0)
    upright, axial_run = _mask_in_world(axial, PreprocessConfig(**config), reference)
    world, world_run = _mask_in_world(tilted, PreprocessConfig(**config), reference)
    own_axes, _ = _mask_in_world(tilted, PreprocessConfig(**config, skullstrip_grid="input-axes"), reference)
    whole, _ = _mask_in_world(tilted, PreprocessConfig(**config, skullstrip_grid="model-grid"), reference)
    assert axial_run["grid"]["used"] == "model-grid" and world_run["grid"]["used"] == "world-axes"
    assert world_run["grid"]["obliquity_deg"] == pytest.approx(41.4, abs=0.1)
    assert _dice(world, upright) >= 0.9
    # the two grids used before: the scan's own (tilted) axes, and the whole axis-aligned box
    assert _dice(own_axes, upright) < _dice(world, upright) - 0.03
    assert _dice(whole, upright) < 0.8


def test_head_box_and_background_level():
    rng = np.random.default_rng(0)
    array = rng.normal(40, 10, (60, 70, 80)).astype(np.float32)  # measured air
    array[20:40, 25:45, 30:60] = 1000.0  # the head
    array[5, 5, 5] = array[55, 65, 75] = 1000.0  # noise speckles are not the head
    fov = np.ones(array.shape, bool)
    fov[:, :, 70:] = False
    array[~fov] = 0.0  # resampling's zero fill
    box = head_box(array, fov, (1.0, 1.0, 1.0), margin_mm=4.0)
    for got, (low, high) in zip(box, ((20, 40), (25, 45), (30, 60)), strict=True):
        assert low - 7 <= got.start <= low - 4 and high + 4 <= got.stop <= high + 7  # margin + sampling
    assert background_level(array, fov) == pytest.approx(40, abs=1.5)
    assert background_level(np.where(array < 500, 0, array), fov) == 0.0  # zero air: nothing to fill
    assert is_oblique((1, 0, 0, 0, 1, 0, 0, 0, 1)) is False


def test_run_json_records_where_deepbet_ran(scans, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(skullstrip, "deepbet_mask", fake_deepbet)
    _, tilted = scans
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(tilted, str(path))
    code = main(["segment", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model.folder),
                 "--device", "cpu", "--progress", "none"])
    assert code == 0
    grid = json.loads((tmp_path / "out" / "run.json").read_text())["brain_mask_run"]["grid"]
    assert grid["used"] == "world-axes" and grid["obliquity_deg"] > 40
    fov = field_of_view_mask(Grid.of(tilted), axis_aligned_grid(tilted, SPACING))
    assert grid["unmeasured_filled_with"] > 0 and not fov.all()
