"""The true size of a synthetic lesion from its analytic shape, on any scan of the patient.

The synth draws each lesion as a perturbed sphere, a signed distance in mm
(:func:`.lesions._signed_distance`, < 0 inside), and paints the image with it; its label map is
the voxels whose centre lies inside, i.e. the shape voxelised: diameters measured on that map
read up to half a voxel long at each end (the lesion table's half-voxel boundary) and step with
the voxel grid. Here the shape itself is measured: cut by the scan's axial slices (at the voxel
centres, where a reader's slices are), each cut's outline traced at the zero level of the signed
distance sampled every :data:`STEP_VOXELS` in-plane (scikit-image ``find_contours``, linear
interpolation), and measured by the lesion table's own axial rule
(:func:`BrainMetSegLib.lesions._axial_diameters`: the longest diameter on the slice where it is
longest, the perpendicular extent there, the slices it is seen on). On a follow-up the scan's
points are mapped back into the baseline head (the recorded rigid movement) where the shape was
drawn. The brain mask's clip of the label map (voxels well outside the brain are never labelled)
is not applied: the image shows the whole shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from skimage.measure import find_contours

from ..lesions import Frame, _axial_diameters, axial_axis
from .lesions import LesionSpec, _signed_distance

#: In-plane sampling of the signed distance (voxels); the zero crossing is interpolated linearly
#: between samples, well under 0.01 mm off on these smooth shapes.
STEP_VOXELS = 0.2


@dataclass(frozen=True)
class AnalyticSize:
    """A lesion's analytic axial size on one scan: longest and perpendicular diameters (mm) on
    the axial slice where the longest is largest, and the number of axial slices that cut it
    (0: the shape lies between two slices)."""

    longest_mm: float
    perpendicular_mm: float
    slices: int


def _reach_mm(spec: LesionSpec) -> float:
    """A radius (mm) around the centre that holds the whole shape: the perturbation adds at
    most the sum of its amplitudes to the unit radius."""
    return spec.diameter_mm / 2 * (1 + float(np.sum(np.abs(spec.shape["amp"])))) + 1.0


def _lps_to_ras(p: np.ndarray) -> np.ndarray:
    return p * np.array([-1.0, -1.0, 1.0])


def analytic_axial_size(spec: LesionSpec, scan: sitk.Image,
                        movement: sitk.AffineTransform | None = None) -> AnalyticSize:
    """Axial diameters (mm) of the lesion ``spec`` (as painted on this scan: its diameter already
    scaled for a follow-up) on the axial slices of ``scan`` (any image of that scan: only its
    grid is used). ``movement``: the head's rigid movement from the baseline, where the shape was
    drawn, to this scan (LPS points; a follow-up's recorded transform; None on the baseline)."""
    frame = Frame.of(scan)
    axis = axial_axis(scan)
    shape = sitk.GetArrayViewFromImage(scan).shape
    centre_lps = _lps_to_ras(np.asarray(spec.centre_ras, float))
    if movement is not None:
        centre_lps = np.asarray(movement.TransformPoint(tuple(float(v) for v in centre_lps)))
    inverse = np.linalg.inv(frame.matrix)
    centre_ijk = inverse @ (centre_lps - frame.origin)
    reach = _reach_mm(spec) / np.linalg.norm(frame.matrix, axis=0)  # voxels along i, j, k
    lo = np.floor(centre_ijk - reach).astype(int)
    hi = np.ceil(centre_ijk + reach).astype(int)
    lo_kji, hi_kji = lo[::-1], hi[::-1]
    plane = [a for a in range(3) if a != axis]
    grids = [np.arange(lo_kji[a], hi_kji[a] + STEP_VOXELS / 2, STEP_VOXELS) for a in plane]
    u, v = np.meshgrid(*grids, indexing="ij")
    points, ids = [], []
    for s in range(max(lo_kji[axis], 0), min(hi_kji[axis], shape[axis] - 1) + 1):
        kji = np.empty((u.size, 3))
        kji[:, axis], kji[:, plane[0]], kji[:, plane[1]] = s, u.ravel(), v.ravel()
        lps = frame.lps(kji)
        if movement is not None:
            lps = _moved_back(movement, lps)
        rel = _lps_to_ras(lps) - np.asarray(spec.centre_ras, float)  # (dx, dy, dz) RAS mm
        sd = _signed_distance((rel[:, 2], rel[:, 1], rel[:, 0]), spec.diameter_mm / 2, spec.shape).reshape(u.shape)
        if not (sd < 0).any():
            continue
        for contour in find_contours(sd, 0.0):
            pts = np.empty((len(contour), 3))
            pts[:, axis] = s
            pts[:, plane[0]] = grids[0][0] + contour[:, 0] * STEP_VOXELS
            pts[:, plane[1]] = grids[1][0] + contour[:, 1] * STEP_VOXELS
            points.append(pts)
            ids.append(np.ones(len(pts), np.int64))
    if not points:
        return AnalyticSize(0.0, 0.0, 0)
    longest, perpendicular, slices = _axial_diameters(np.concatenate(points), np.concatenate(ids), 1, frame,
                                                      axis, shape)
    return AnalyticSize(float(longest[1]), float(perpendicular[1]), int(slices[1]))


def _moved_back(movement: sitk.AffineTransform, lps: np.ndarray) -> np.ndarray:
    """(N, 3) LPS points of the moved head mapped back to the baseline head: the inverse of
    ``p -> A (p - c) + c + t``."""
    matrix = np.reshape(movement.GetMatrix(), (3, 3))
    centre = np.asarray(movement.GetCenter())
    return np.linalg.solve(matrix, (lps - centre - np.asarray(movement.GetTranslation())).T).T + centre
