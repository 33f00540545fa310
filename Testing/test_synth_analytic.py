"""The analytic size of a synthetic lesion (BrainMetSegLib.synth.analytic): the truth the
longitudinal benchmark measures responses against besides the voxelised label maps."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.synth import SynthConfig
from BrainMetSegLib.synth.analytic import analytic_axial_size
from BrainMetSegLib.synth.followup import FollowupConfig, make_series
from BrainMetSegLib.synth.lesions import LesionSpec

SMALL = SynthConfig(anatomy="mni152", spacing_mm=3.0, field_of_view="brain", n_lesions=5, diameter_range_mm=(8.0, 20.0))


def _grid(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    """An image on the synth's grid convention (RAS-aligned: direction diag(-1, -1, 1))."""
    img = sitk.Image(shape[::-1], sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def _sphere(centre_ras, diameter) -> LesionSpec:
    # no outline perturbation (amplitudes 0): a sphere
    shape = {"dirs": np.tile([1.0, 0.0, 0.0], (4, 1)), "freq": np.ones(4), "phase": np.zeros(4), "amp": np.zeros(4)}
    return LesionSpec(centre_ras=np.asarray(centre_ras, float), diameter_mm=diameter, pattern="nodular",
                      location="deep", enhancement=2.0, shape=shape)


def test_sphere_on_its_central_slice_measures_its_diameter():
    # centre on slice k = 20 (RAS z = 20 on this grid): the central cut is the full circle
    scan = _grid()
    size = analytic_axial_size(_sphere((-20.3, -19.6, 20.0), 7.3), scan)
    assert size.longest_mm == pytest.approx(7.3, abs=0.02)
    assert size.perpendicular_mm == pytest.approx(7.3, abs=0.02)
    assert size.slices == 7  # slices at -3..+3 mm cut a sphere of radius 3.65


def test_moved_scan_cuts_the_shape_where_the_movement_puts_it():
    # the head rotated and shifted: the sphere's centre lands 0.4 mm off a slice, so the
    # widest cut is 2 sqrt(r^2 - 0.4^2); the label map would read whole voxels
    scan = _grid()
    centre_lps = np.array([20.0, 20.0, 20.0])
    movement = sitk.AffineTransform(3)
    movement.SetCenter((10.0, 5.0, 0.0))
    rotation = sitk.VersorTransform((0.0, 0.0, 1.0), np.deg2rad(7.0))
    movement.SetMatrix(rotation.GetMatrix())
    moved = np.asarray(movement.TransformPoint(tuple(centre_lps)))
    movement.SetTranslation((0.3, -0.2, 20.4 - moved[2]))  # moved centre at z = 20.4 mm
    size = analytic_axial_size(_sphere(centre_lps * [-1, -1, 1], 8.0), scan, movement)
    assert size.longest_mm == pytest.approx(2 * np.sqrt(4.0**2 - 0.4**2), abs=0.02)


@pytest.fixture(scope="module")
def series():
    return make_series(3, SMALL, 1, FollowupConfig(scenario="stable"))


def test_series_lesions_carry_their_analytic_shapes(series):
    base, (fu,) = series
    for case, movement in ((base, None), (fu.case, fu.transform)):
        rows = {int(r["lesion_id"]): r for r in lesion_table(case.labels)}
        assert case.lesions
        for rec in case.lesions:
            spec = case.spec_of(rec["id"])
            assert spec.diameter_mm == pytest.approx(rec["diameter_mm"], abs=1e-3)
            size = analytic_axial_size(spec, case.labels, movement)
            # the label map reads the shape voxelised: within a voxel's diagonal (3 mm voxels)
            assert abs(rows[rec["id"]]["axial_longest_diameter_mm"] - size.longest_mm) < 3.0 * np.sqrt(2)
    # a stable follow-up: each lesion's analytic diameter follows the drawn scale
    for fid, tid in fu.track_of.items():
        a0 = analytic_axial_size(base.spec_of(tid), base.labels).longest_mm
        a1 = analytic_axial_size(fu.case.spec_of(fid), fu.case.labels, fu.transform).longest_mm
        assert a1 / a0 == pytest.approx(fu.scales[tid], rel=0.12)
