"""Diameters on the probability map's outline (sub-voxel) against analytic shapes, and the
label-map fallback where the labels are not that map's regions (issue 26)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib.lesions import ON_LABELS, ON_PROBABILITY, label_instances, lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

LEVEL = 0.5


def smooth_ellipsoid(semi_axes_mm, centre_mm, spacing_xyz=(1.0, 1.0, 1.0), shape_zyx=(24, 40, 40),
                     edge_mm=0.6):
    """(probability, labels) images of an ellipsoid whose probability falls smoothly across
    its surface (a logistic of the scaled distance, 0.5 exactly on the surface), the labels
    its region of p > 0.5. Semi-axes and centre along the image x, y, z axes (mm)."""
    z, y, x = np.indices(shape_zyx, dtype=float)
    pts = [x * spacing_xyz[0] - centre_mm[0], y * spacing_xyz[1] - centre_mm[1], z * spacing_xyz[2] - centre_mm[2]]
    rho = np.sqrt(sum((p / a) ** 2 for p, a in zip(pts, semi_axes_mm, strict=True)))
    distance = (rho - 1) * min(semi_axes_mm)  # mm outside (> 0) / inside, exact on the surface
    prob = (1 / (1 + np.exp(distance / edge_mm))).astype(np.float32)
    images = []
    for array in (prob, label_instances(prob > LEVEL, spacing_xyz).astype(np.uint16)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing_xyz)
        images.append(image)
    return images


def _diameters(shifts, semi_axes, spacing, outline):
    out = []
    for shift in shifts:
        centre = [c + s * sp for c, s, sp in zip((19.5, 19.5, 11.5 * spacing[2]), shift, spacing, strict=True)]
        prob, labels = smooth_ellipsoid(semi_axes, centre, spacing)
        (row,) = lesion_table(labels, prob, outline)
        out.append((row["axial_longest_diameter_mm"], row["axial_perpendicular_diameter_mm"],
                    row["longest_diameter_mm"], row["diameters_on"]))
    return out


@pytest.mark.parametrize("semi_axes, spacing", [((3.3, 3.3, 3.3), (1.0, 1.0, 1.0)),
                                                ((5.2, 5.2, 5.2), (1.0, 1.0, 1.0)),
                                                ((7.0, 4.0, 3.0), (0.9, 0.9, 1.5))])
def test_outline_diameter_of_a_smooth_shape_is_closer_to_the_truth_across_subvoxel_shifts(semi_axes, spacing):
    """Over 12 random sub-voxel positions of the same shape: the probability outline's axial
    longest, perpendicular and 3D diameters are nearer the true ones than the label map's, and
    spread less (the label map's half-voxel boundary moves in whole-voxel steps)."""
    shifts = np.random.default_rng(26).random((12, 3))
    truth = np.array([2 * max(semi_axes[:2]), 2 * min(semi_axes[:2]), 2 * max(semi_axes)])
    sub = _diameters(shifts, semi_axes, spacing, LEVEL)
    lab = _diameters(shifts, semi_axes, spacing, None)
    assert {r[3] for r in sub} == {ON_PROBABILITY} and {r[3] for r in lab} == {ON_LABELS}
    sub_d = np.array([r[:3] for r in sub])
    lab_d = np.array([r[:3] for r in lab])
    sub_err, lab_err = np.abs(sub_d - truth), np.abs(lab_d - truth)
    assert sub_err.mean(axis=0).max() < 0.25, sub_err.mean(axis=0)  # mm
    assert (sub_err.mean(axis=0) < lab_err.mean(axis=0)).all(), (sub_err.mean(axis=0), lab_err.mean(axis=0))
    # a stable lesion seen at two positions: the follow-up / baseline ratio stays near 1
    assert sub_d[:, 0].std() / truth[0] < 0.5 * lab_d[:, 0].std() / truth[0]
    assert np.abs(sub_d[:, 0] / sub_d[0, 0] - 1).max() < 0.03


def _two_lesions():
    prob_a, _ = smooth_ellipsoid((4.2, 4.2, 4.2), (11.3, 19.6, 11.4))
    prob_b, _ = smooth_ellipsoid((3.1, 3.1, 3.1), (29.2, 20.3, 11.7))
    prob = sitk.Maximum(prob_a, prob_b)
    return prob, lesion_labels(prob, OperatingPoint(0.9, 0.0, LEVEL))


def test_edited_lesions_and_other_levels_fall_back_to_the_label_map():
    prob, labels = _two_lesions()
    drawn = {r["lesion_id"]: r for r in lesion_table(labels, prob, LEVEL)}
    on_labels = {r["lesion_id"]: r for r in lesion_table(labels, prob)}
    assert [r["diameters_on"] for r in drawn.values()] == [ON_PROBABILITY] * 2
    assert [r["diameters_on"] for r in on_labels.values()] == [ON_LABELS] * 2
    assert drawn[1]["axial_longest_diameter_mm"] != on_labels[1]["axial_longest_diameter_mm"]
    lab = sitk.GetArrayFromImage(labels)
    key = ("axial_longest_diameter_mm", "axial_perpendicular_diameter_mm", "longest_diameter_mm", "axial_slices")
    for edit in ("paint", "erase"):
        edited = lab.copy()
        k, j, i = np.argwhere(lab == 2)[np.argmax(np.argwhere(lab == 2)[:, 2])]  # the lesion's rightmost voxel
        if edit == "paint":
            edited[k, j, i + 1] = 2  # a voxel of p <= 0.5 painted onto lesion 2
        else:
            edited[k, j, i] = 0  # a voxel of p > 0.5 erased from lesion 2
        image = sitk.GetImageFromArray(edited)
        image.CopyInformation(labels)
        rows = {r["lesion_id"]: r for r in lesion_table(image, prob, LEVEL)}
        plain = {r["lesion_id"]: r for r in lesion_table(image, prob)}
        assert rows[1]["diameters_on"] == ON_PROBABILITY and rows[2]["diameters_on"] == ON_LABELS, edit
        assert all(rows[1][c] == drawn[1][c] for c in key)  # the untouched lesion as drawn
        assert all(rows[2][c] == plain[2][c] for c in key)  # the edited one as its label map
    # labels drawn at 0.5, measured as if drawn at 0.3: voxels outside above 0.3, not its regions
    assert {r["diameters_on"] for r in lesion_table(labels, prob, 0.3)} == {ON_LABELS}
    # a probability map the labels were not drawn from at all
    blank = sitk.Image(prob.GetSize(), sitk.sitkFloat32)
    blank.CopyInformation(prob)
    assert {r["diameters_on"] for r in lesion_table(labels, blank, LEVEL)} == {ON_LABELS}


def test_touching_lesions_split_by_the_outline_rule_stay_on_the_probability():
    """Two detections in one outline region (split by the watershed): both regions of p > level
    with a face between them; that face keeps its midpoint, the outer outline is sub-voxel."""
    prob_a, _ = smooth_ellipsoid((5.5, 5.5, 5.5), (14.0, 19.5, 11.5), edge_mm=1.2)
    prob_b, _ = smooth_ellipsoid((5.5, 5.5, 5.5), (24.3, 19.5, 11.5), edge_mm=1.2)
    prob = sitk.Maximum(prob_a, prob_b)
    labels = lesion_labels(prob, OperatingPoint(0.95, 0.0, 0.3))
    assert int(cc_count(prob, 0.3)) == 1  # one outline region
    assert int(sitk.GetArrayViewFromImage(labels).max()) == 2
    rows = lesion_table(labels, prob, 0.3)
    assert [r["diameters_on"] for r in rows] == [ON_PROBABILITY] * 2
    assert all(9.0 < r["axial_longest_diameter_mm"] < 14.0 for r in rows), rows


def cc_count(prob: sitk.Image, level: float) -> int:
    return int(label_instances(sitk.GetArrayViewFromImage(prob) > level, (1, 1, 1)).max())


def test_many_specks_cost():
    """Thousands of specks (a low threshold): the outline costs a few vector operations more
    per voxel face; printed, not asserted as a speed (the machine is shared)."""
    rng = np.random.default_rng(0)
    prob = sitk.GetImageFromArray(ndimage.gaussian_filter(rng.random((60, 96, 96)).astype(np.float32), 1.0))
    point = OperatingPoint(0.56, 0.0, 0.55)
    labels = lesion_labels(prob, point)
    times = {"labels": [], "probability": []}
    for _ in range(3):  # interleaved A/B
        for name, outline in (("labels", None), ("probability", point.outline)):
            t0 = time.perf_counter()
            rows = lesion_table(labels, prob, outline)
            times[name].append(time.perf_counter() - t0)
    assert len(rows) > 1000 and {r["diameters_on"] for r in rows} == {ON_PROBABILITY}
    best = {k: min(v) for k, v in times.items()}
    print(f"{len(rows)} lesions: label map {best['labels']:.3f} s, probability outline {best['probability']:.3f} s "
          f"({best['probability'] / best['labels']:.2f}x)")
