"""Lesion instances and measures on analytic shapes, in physical space."""

import typing

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.lesions import COLUMNS, LesionTableRow, label_instances, lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels


def ellipsoid_image(semi_axes_mm, spacing_xyz, shape_zyx, centre_mm=None, direction=None):
    """Label image of an ellipsoid (semi-axes along the image x, y, z axes, mm)."""
    z, y, x = np.indices(shape_zyx, dtype=float)
    centre = centre_mm or [(s - 1) / 2 * sp for s, sp in zip(shape_zyx[::-1], spacing_xyz)]
    pts = [x * spacing_xyz[0] - centre[0], y * spacing_xyz[1] - centre[1], z * spacing_xyz[2] - centre[2]]
    inside = sum((p / a) ** 2 for p, a in zip(pts, semi_axes_mm)) <= 1
    image = sitk.GetImageFromArray(inside.astype(np.uint16))
    image.SetSpacing(spacing_xyz)
    if direction is not None:
        image.SetDirection(direction)
    return image


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (0.4, 0.4, 1.0), (1.0, 0.6, 0.8)])
def test_sphere_volume_and_diameters(spacing):
    radius = 6.0
    shape = tuple(int(np.ceil(16 / s)) for s in spacing[::-1])
    (row,) = lesion_table(ellipsoid_image([radius] * 3, spacing, shape))
    assert set(COLUMNS) <= set(row)
    assert row["volume_mm3"] == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.06)
    # surfaces sit at the half-voxel boundary: within one (largest) voxel of the true diameter
    tol = max(spacing) + 1e-6
    for key in ("longest_diameter_mm", "axial_longest_diameter_mm", "axial_perpendicular_diameter_mm"):
        assert abs(row[key] - 2 * radius) <= tol, (key, row[key])
    assert row["rano_bm_measurable"]


def test_rows_are_the_typed_definition_in_column_order():
    """Each row has exactly the LesionTableRow keys, in COLUMNS order (the CSV/JSON order), and
    values of the declared types, with and without a probability map."""
    labels = ellipsoid_image([4, 3, 2], (0.5, 0.5, 0.5), (12, 20, 20))
    probability = sitk.Cast(labels, sitk.sitkFloat32) * 0.75
    hints = typing.get_type_hints(LesionTableRow)
    assert tuple(hints) == COLUMNS and len(COLUMNS) == 18 and COLUMNS[0] == "lesion_id"
    for prob in (None, probability):
        (row,) = lesion_table(labels, prob)
        assert tuple(row) == COLUMNS
        for key, kind in hints.items():
            assert type(row[key]) is kind, (key, row[key])
    assert row["max_probability"] == pytest.approx(0.75)


def test_ellipsoid_axes_and_rano():
    spacing = (0.5, 0.5, 0.5)
    # 16 x 6 x 4 mm ellipsoid: axial (x-y) longest 16, perpendicular 6
    (row,) = lesion_table(ellipsoid_image([8, 3, 2], spacing, (24, 24, 40)))
    assert row["longest_diameter_mm"] == pytest.approx(16, abs=0.6)
    assert row["axial_longest_diameter_mm"] == pytest.approx(16, abs=0.6)
    assert row["axial_perpendicular_diameter_mm"] == pytest.approx(6, abs=0.6)
    assert row["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 8 * 3 * 2, rel=0.08)
    assert row["rano_bm_measurable"]
    # perpendicular under 5 mm: not measurable
    (row,) = lesion_table(ellipsoid_image([8, 2, 3], spacing, (24, 24, 40)))
    assert row["axial_perpendicular_diameter_mm"] == pytest.approx(4, abs=0.6)
    assert not row["rano_bm_measurable"]


def test_axial_plane_follows_direction():
    """With the image's z axis pointing anterior, axial slices are the image's y planes."""
    direction = (1, 0, 0, 0, 0, 1, 0, -1, 0)  # image y -> -S, image z -> A
    image = ellipsoid_image([8, 2, 5], (0.5, 0.5, 0.5), (24, 24, 40), direction=direction)
    (row,) = lesion_table(image)
    # physical S extent comes from image y (2 mm semi-axis); axial plane holds x (8) and z (5)
    assert row["axial_longest_diameter_mm"] == pytest.approx(16, abs=0.6)
    assert row["axial_perpendicular_diameter_mm"] == pytest.approx(10, abs=0.6)


def test_instances_largest_first_and_min_volume():
    mask = np.zeros((20, 20, 40), bool)
    mask[2:4, 2:4, 2:4] = True          # 8 voxels
    mask[10:15, 10:15, 10:15] = True    # 125 voxels
    mask[10:13, 10:13, 30:33] = True    # 27 voxels
    mask[16, 16, 16] = mask[17, 17, 17] = True  # diagonal neighbours: one 26-connected lesion
    labels = label_instances(mask, (1, 1, 1))
    assert labels.max() == 4
    assert (labels == 1).sum() == 125 and (labels == 2).sum() == 27 and (labels == 3).sum() == 8
    assert (labels == 4).sum() == 2
    labels = label_instances(mask, (1, 1, 2), min_volume_mm3=20)  # voxel = 2 mm^3
    assert labels.max() == 2


def test_rethreshold_and_probability_columns():
    prob = np.zeros((16, 16, 16), np.float32)
    prob[4:8, 4:8, 4:8] = 0.9
    prob[5, 5, 5] = 0.99
    prob[10:12, 10:12, 10:12] = 0.4
    image = sitk.GetImageFromArray(prob)
    image.SetSpacing((0.8, 0.8, 0.8))
    labels = lesion_labels(image, OperatingPoint(0.5))
    rows = lesion_table(labels, image)
    assert len(rows) == 1 and rows[0]["max_probability"] == pytest.approx(0.99)
    assert rows[0]["mean_probability"] == pytest.approx((63 * 0.9 + 0.99) / 64, rel=1e-5)
    assert len(lesion_table(lesion_labels(image, OperatingPoint(0.3)), image)) == 2
    assert sitk.GetArrayFromImage(lesion_labels(image, OperatingPoint(0.95))).sum() == 1


@pytest.mark.parametrize("n", [40, 300, 4500])
def test_farthest_pair_of_flat_point_sets(n):
    """Coplanar points (axial contours) defeat the convex hull; pdist and the blockwise path
    for huge sets both give the brute-force answer and its direction."""
    from scipy.spatial.distance import cdist

    from BrainMetSegLib.lesions import _farthest_pair

    rng = np.random.default_rng(n)
    pts = np.c_[rng.normal(size=(n, 2)) * [3.0, 1.0], np.full(n, 2.0)]
    d, vec = _farthest_pair(pts)
    full = cdist(pts, pts)
    assert d == pytest.approx(full.max())
    i, j = np.unravel_index(np.argmax(full), full.shape)
    assert abs(vec @ (pts[j] - pts[i])) == pytest.approx(full.max())
