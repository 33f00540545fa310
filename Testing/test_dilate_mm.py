"""The brain gate's dilation by a ball in mm (preprocess.dilate_mm) against the definition."""

import numpy as np
import pytest
from scipy import ndimage

from BrainMetSegLib.preprocess import _crop_box, dilate_mm


def _ball_dilation(mask, radius_mm, spacing_xyz):
    """The definition: a binary dilation by the ball {d: |d|_mm^2 <= r^2 + 1e-4} (scipy, brute force)."""
    r = [int(np.floor(radius_mm / s)) for s in spacing_xyz[::-1]]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_xyz[::-1]
    ball = (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm ** 2 + 1e-4
    return ndimage.binary_dilation(mask, structure=ball)


@pytest.mark.parametrize("spacing_xyz", [(0.8333, 0.8333, 0.8333), (0.5, 0.7, 3.0), (1.0, 1.0, 1.0), (0.9, 1.1, 5.0)])
@pytest.mark.parametrize("radius_mm", [1.0, 3.0, 4.0, 6.5])
def test_dilate_mm_is_the_ball_dilation(spacing_xyz, radius_mm):
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 34, 38), bool)
    mask[8:20, 10:15, 12:30] = True
    mask[rng.integers(0, 30, 12), rng.integers(0, 34, 12), rng.integers(0, 38, 12)] = True
    mask[0, 0, 0] = mask[29, 33, 37] = True  # at the array's corners: the box is clipped
    got = dilate_mm(mask, radius_mm, spacing_xyz)
    assert got.dtype == bool and got.shape == mask.shape
    np.testing.assert_array_equal(got, _ball_dilation(mask, radius_mm, spacing_xyz))


def test_dilate_mm_edge_cases():
    empty = np.zeros((5, 6, 7), bool)
    assert not dilate_mm(empty, 4.0, (1, 1, 1)).any()
    one = empty.copy()
    one[2, 3, 3] = True
    np.testing.assert_array_equal(dilate_mm(one, 0.0, (1, 1, 1)), one)
    assert dilate_mm(one, 1.0, (1, 1, 1)).sum() == 7  # the voxel and its 6 face neighbours


def test_crop_box_is_the_bounding_box_grown_and_clipped():
    mask = np.zeros((10, 12, 14), bool)
    mask[3:5, 0:2, 9:14] = True
    assert _crop_box(mask, [1, 2, 3]) == (slice(2, 6), slice(0, 4), slice(6, 14))
