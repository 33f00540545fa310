"""Test-time grid shifts (--grid-shifts): the probability averaged over model grids moved by half a
voxel, so a lesion's outline depends less on where the head lies on the grid."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from test_pipeline import BrightNet, with_sphere

from BrainMetSegLib.errors import OptionError
from BrainMetSegLib.geometry import Grid
from BrainMetSegLib.grid_shifts import grid_offsets_vox
from BrainMetSegLib.longitudinal.consistency import LESION_SETTINGS, Findings, SourceInfo, check_segmentation
from BrainMetSegLib.options import GRID_SHIFTS
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from conftest import make_volume


def test_offsets_are_distinct_half_voxel_shifts_starting_unshifted():
    for n in GRID_SHIFTS:
        offsets = grid_offsets_vox(n)
        assert len(offsets) == n == len(set(offsets))
        assert offsets[0] == (0.0, 0.0, 0.0)
        assert {v for o in offsets for v in o} <= {0.0, 0.5}
    # 4 grids: every axis shifted in half the passes, so no axis keeps one phase
    assert np.mean(grid_offsets_vox(4), axis=0).tolist() == [0.25, 0.25, 0.25]


def test_a_shifted_grid_moves_along_its_own_axes():
    direction = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x along +P, y along -L
    grid = Grid((10, 10, 10), (2.0, 1.0, 3.0), (5.0, 6.0, 7.0), direction)
    moved = grid.shifted((0.5, 1.0, 0.5))
    assert moved.size_xyz == grid.size_xyz and moved.spacing_xyz == grid.spacing_xyz
    assert np.allclose(moved.origin_lps, (5.0 - 1.0, 6.0 + 1.0, 7.0 + 1.5))


@pytest.mark.parametrize("bad", [0, 3, 16, True, np.bool_(True), 2.0, "4"])
def test_other_counts_are_refused(bad):
    with pytest.raises(OptionError, match="--grid-shifts"):
        SegmentConfig(grid_shifts=bad)


def test_a_numpy_count_is_stored_as_an_int():
    """run.json is written with json: a NumPy integer would fail there after the whole run."""
    config = SegmentConfig(grid_shifts=np.int64(4))
    assert type(config.grid_shifts) is int and json.dumps({"grid_shifts": config.grid_shifts})


def test_the_command_refuses_other_counts(volume_file, tmp_path):
    run = subprocess.run([sys.executable, "-m", "BrainMetSegLib", "segment", str(volume_file), "-o",
                          str(tmp_path / "out"), "--grid-shifts", "3"], capture_output=True, text=True)
    assert run.returncode == 2 and "--grid-shifts" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def _moved(image: sitk.Image, voxels_xyz) -> sitk.Image:
    """The same content (noise included) moved by whole scan voxels, on the same grid."""
    out = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), voxels_xyz[::-1], axis=(0, 1, 2)))
    out.CopyInformation(image)
    return out


def _diameters(tiny_model, images, shifts: int) -> tuple[list[float], dict]:
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none",
                                  grid_shifts=shifts), network=BrightNet())
    results = [seg.run_images([image], "case") for image in images]
    assert all(r.n_lesions == 1 for r in results)
    return [r.table[0]["longest_diameter_mm"] for r in results], results[0].provenance


def test_averaging_over_eight_grids_makes_the_outline_independent_of_where_the_lesion_lies(tiny_model):
    """The tiny model's grid is 2 mm, the scan 1 mm: the same lesion moved by one scan voxel along
    x, y and / or z lies on each of the 8 half-voxel phases of the model grid. One grid measures
    its diameter differently on each; eight grids, shifted by those half voxels, alike."""
    image = make_volume((40, 48, 56), (1.0, 1.0, 1.0), origin=(10.0, -20.0, 5.0))
    image = with_sphere(image, image.TransformContinuousIndexToPhysicalPoint((27.3, 23.6, 19.2)), radius_mm=4.6)
    positions = [_moved(image, offset) for offset in itertools.product((0, 1), repeat=3)]
    one, _ = _diameters(tiny_model, positions, 1)
    eight, run = _diameters(tiny_model, positions, 8)
    assert np.std(one) > 0.05  # the phase matters to one grid (0.09 mm)
    assert np.std(eight) < 0.25 * np.std(one)  # 0.01 mm
    assert run["inference_run"]["grid_shifts"] == {"grids": 8, "offsets_vox_xyz": [list(o) for o in
                                                                                      grid_offsets_vox(8)]}
    assert json.loads(json.dumps(run["settings"]))["grid_shifts"] == 8


def _run(grid_shifts=None) -> dict:
    settings = {"threshold_used": 0.5}
    if grid_shifts is not None:
        settings["grid_shifts"] = grid_shifts
    return {"settings": settings}


@pytest.mark.parametrize(("a", "b", "refused"), [(4, 1, True), (4, None, True), (None, 1, False), (4, 4, False)])
def test_compare_refuses_time_points_segmented_with_other_grid_shifts(a, b, refused):
    """A run from before the option (no key) ran one grid."""
    assert "grid_shifts" in LESION_SETTINGS
    findings = Findings()
    check_segmentation(SourceInfo("T0", "t0", _run(a)), SourceInfo("T1", "t1", _run(b)), findings)
    assert bool([r for r in findings.refusals if "grid_shifts" in r]) == refused


def test_a_pass_shifted_by_nothing_is_the_first_pass():
    """The shifted passes put the first pass's masks and crop on their grid: unshifted, that is
    the first pass itself (array, masks and grid), so the passes differ only by the shift."""
    from BrainMetSegLib.preprocess import PreprocessConfig, preprocess, preprocess_shifted

    image = make_volume((40, 48, 56), (1.0, 1.2, 1.5), origin=(10.0, -20.0, 5.0))
    config = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), brain_mask="none")
    first = preprocess([image], config)
    same = preprocess_shifted([image], first, (0.0, 0.0, 0.0), config)
    np.testing.assert_array_equal(same.array, first.array)
    np.testing.assert_array_equal(same.brain, first.brain)
    np.testing.assert_array_equal(same.brain_undilated, first.brain_undilated)
    assert same.geometry == first.geometry
    moved = preprocess_shifted([image], first, (0.5, 0.0, 0.5), config)
    assert moved.array.shape == first.array.shape and not np.array_equal(moved.array, first.array)
    assert np.allclose(np.subtract(moved.geometry.model_grid.origin_lps, first.geometry.model_grid.origin_lps),
                       (1.0, 0.0, 1.0))


def test_progress_runs_once_over_all_grids(tiny_model):
    """The inference stage's fraction goes from 0 to 1 once over the 4 grids (never back), each
    message naming its grid."""
    image = make_volume((40, 48, 56), (1.0, 1.0, 1.0))
    events = []
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none", grid_shifts=4,
                                  inference_mode="paper"), network=BrightNet())
    seg.run_images([image], "case", progress=events.append)
    inference = [e for e in events if e.stage == "inference" and e.message.startswith("grid")]
    fractions = [e.fraction for e in inference]
    assert fractions == sorted(fractions) and 0 < fractions[0] <= 0.25 and fractions[-1] == pytest.approx(1.0)
    assert {e.message.split(":")[0] for e in inference} == {"grid 1/4", "grid 2/4", "grid 3/4", "grid 4/4"}


@pytest.mark.parametrize("direction,spacing", [
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (1.0, 1.0, 1.0)),                                          # RAS
    (tuple(sitk.VersorTransform((0.3, 1.0, 0.2), np.deg2rad(25)).GetMatrix()), (1.0, 1.0, 1.0)),  # oblique
    ((1, 0, 0, 0, 0, -1, 0, 1, 0), (0.8, 1.1, 2.5)),                                           # coronal, anisotropic
])
def test_shifted_grids_keep_the_lesion_where_it_is(tiny_model, direction, spacing):
    """Every shifted grid is mapped back onto the scan: averaged, the lesion is where it was put,
    at its size, whatever the scan's orientation (a pass mapped back wrongly would smear or mirror it)."""
    image = make_volume((40, 48, 56), spacing, direction, origin=(10.0, -20.0, 5.0))
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint((30, 22, 18)))
    image = with_sphere(image, centre, radius_mm=5.0)
    seg = Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", brain_mask="none", grid_shifts=4),
                    network=BrightNet())
    result = seg.run_images([image], "case")
    assert result.n_lesions == 1
    row = result.table[0]
    ras = np.array([row["centroid_r"], row["centroid_a"], row["centroid_s"]])
    assert np.allclose(ras, centre * [-1, -1, 1], atol=0.5 * max(spacing))
    assert row["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 125, rel=0.25)
