"""The vectorised lesion table (lesion_measure) gives the per-lesion table's values."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import pdist, squareform
from skimage import measure

from BrainMetSegLib import lesion_measure, lesions
from BrainMetSegLib.lesions import _Frame, axial_axis


def oblique_image(array_kji, spacing=(0.9, 1.1, 2.3)):
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(spacing)
    rotation = np.array([[0, 0.6, 0.8], [1, 0, 0], [0, 0.8, -0.6]])  # permuted and oblique
    image.SetDirection(rotation.T.ravel().tolist())
    image.SetOrigin((3.0, -4.0, 5.0))
    return image


def tied_perpendiculars(labels: sitk.Image, lesion_id: int, longest: float) -> list[float]:
    """Perpendicular diameters (mm) across every pair of contour points that is a longest
    axial diameter of the lesion (on any slice where it is that long), by brute force."""
    mask = sitk.GetArrayFromImage(labels) == lesion_id
    frame, axis = _Frame.of(labels), axial_axis(labels)
    normal = frame.matrix[:, 2 - axis] / np.linalg.norm(frame.matrix[:, 2 - axis])
    out = []
    for s in range(mask.shape[axis]):
        plane = np.take(mask, s, axis=axis)
        if not plane.any():
            continue
        pts2 = np.concatenate(measure.find_contours(np.pad(plane.astype(np.uint8), 1), 0.5)) - 1
        pts = frame.lps(np.insert(pts2, axis, s, axis=1))
        d = squareform(pdist(pts))
        if abs(d.max() - longest) > 1e-9:
            continue
        for p, q in zip(*np.nonzero(d >= d.max() - 1e-9)):
            proj = pts @ np.cross(normal, (pts[q] - pts[p]) / d.max())
            out.append(float(proj.max() - proj.min()))
    return out


def compare(expected, got, labels, perpendicular_exact=True):
    assert [r["lesion_id"] for r in got] == [r["lesion_id"] for r in expected]
    ties = 0
    for a, b in zip(expected, got):
        for key, value in a.items():
            if key == "axial_perpendicular_diameter_mm":
                if not np.isclose(value, b[key], rtol=1e-9):
                    # several equally long axial diameters: each table took one of them
                    candidates = tied_perpendiculars(labels, a["lesion_id"], a["axial_longest_diameter_mm"])
                    assert min(abs(c - value) for c in candidates) < 1e-6
                    assert min(abs(c - b[key]) for c in candidates) < 1e-6
                    ties += 1
            elif key == "rano_bm_measurable":
                continue  # depends on the perpendicular diameter (checked with it)
            elif isinstance(value, float):
                # mean_probability: the per-lesion table sums float32 values
                assert b[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
            else:
                assert b[key] == value, key
    if perpendicular_exact:
        assert ties == 0
    return ties


def test_random_blobs_oblique_anisotropic():
    rng = np.random.default_rng(7)
    prob = ndimage.gaussian_filter(rng.random((50, 60, 64)).astype(np.float32), 1.5)
    image = oblique_image(prob)
    for threshold in (0.52, 0.54):
        labels = lesions.rethreshold(image, threshold)
        expected = lesions.lesion_table(labels, image)
        got = lesion_measure.measure_lesions(labels, image)
        assert len(got) > 50
        compare(expected, got, labels, perpendicular_exact=False)


def test_ellipsoids_exact_and_without_probability():
    k, j, i = np.indices((30, 40, 44), dtype=float)
    labels = np.zeros(k.shape, np.uint16)
    for n, (c, r) in enumerate((((15, 20, 14), (6, 9, 5)), ((12, 18, 34), (3, 4, 6)),
                                ((25, 33, 30), (1.2, 1.2, 1.2))), start=1):
        labels[((k - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((i - c[2]) / r[2]) ** 2 <= 1] = n
    image = oblique_image(labels, spacing=(0.8, 1.0, 1.7))
    compare(lesions.lesion_table(image), lesion_measure.measure_lesions(image), image)
    assert np.isnan(lesion_measure.measure_lesions(image)[0]["max_probability"])
    empty = oblique_image(np.zeros((4, 5, 6), np.uint16))
    assert lesion_measure.measure_lesions(empty) == []


def test_many_specks_faster_than_per_lesion_table():
    """Thousands of specks (a low threshold on an untrained model's output): printed, not
    asserted as a speed (the machine is shared); the values must still agree."""
    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter(rng.random((60, 96, 96)).astype(np.float32), 1.0)
    image = sitk.GetImageFromArray(prob)
    labels = lesions.rethreshold(image, 0.56)
    t0 = time.perf_counter()
    expected = lesions.lesion_table(labels, image)
    t1 = time.perf_counter()
    got = lesion_measure.measure_lesions(labels, image)
    t2 = time.perf_counter()
    print(f"{len(got)} lesions: per-lesion table {t1 - t0:.2f} s, vectorised {t2 - t1:.2f} s "
          f"({(t1 - t0) / (t2 - t1):.1f}x)")
    assert len(got) > 1000
    compare(expected, got, labels, perpendicular_exact=False)
