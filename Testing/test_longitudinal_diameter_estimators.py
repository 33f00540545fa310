"""benchmarks/longitudinal_diameter_estimators.py: on a disc and on an ellipse drawn as a
probability map, each per-slice estimator gives the shape's own size (mm, with the spacing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "longitudinal_diameter_estimators.py"


@pytest.fixture(scope="module")
def est():
    return load_script(SCRIPT, "bench_longitudinal_diameter_estimators")


def _ellipse_probability(semi_y: float, semi_x: float, spacing_yx=(1.0, 1.0), slices: int = 3):
    """(Z, Y, X) probability: a smooth step (1 inside, 0 outside, over ~1 voxel) of an axial
    ellipse of semi-axes ``semi_y`` x ``semi_x`` mm on every slice."""
    y, x = np.mgrid[-20:21, -20:21].astype(float)
    r = np.sqrt((y * spacing_yx[0] / semi_y) ** 2 + (x * spacing_yx[1] / semi_x) ** 2)
    edge_mm = (1.0 - r) * min(semi_y, semi_x)
    p = 1.0 / (1.0 + np.exp(-4.0 * edge_mm))
    return np.repeat(p[None], slices, axis=0)


@pytest.mark.parametrize("spacing_yx", [(1.0, 1.0), (0.5, 0.8)])
def test_a_disc_measures_its_diameter_by_every_estimator(est, spacing_yx):
    p = _ellipse_probability(5.0, 5.0, spacing_yx)
    out = est.slice_estimates(p, p > 0.5, 0.5, spacing_yx)
    assert set(out) == set(est.ESTIMATORS)
    for name, mm in out.items():
        assert mm == pytest.approx(10.0, abs=0.35), name


def test_an_ellipse_keeps_its_long_axis_and_its_equivalent_diameter_is_shorter(est):
    p = _ellipse_probability(3.0, 7.0)
    out = est.slice_estimates(p, p > 0.5, 0.5, (1.0, 1.0))
    assert out["outline"] == pytest.approx(14.0, abs=0.35)
    # the low-passed contour rounds an elongated lesion's tips: shorter, the fewer harmonics
    assert 13.0 < out["fourier4"] < out["fourier6"] < out["outline"]
    assert out["equivalent"] == pytest.approx(2 * np.sqrt(3.0 * 7.0), abs=0.35)  # 9.2 mm


def test_smoothing_a_contour_keeps_a_circle(est):
    t = np.linspace(0, 2 * np.pi, 60)
    circle = np.c_[4 * np.cos(t), 4 * np.sin(t)]
    assert est.farthest_mm(est.fourier_smoothed(circle, 4)) == pytest.approx(8.0, abs=0.05)
