"""What a case's report thumbnail shows: one axial slice through its worst error, cut out of the
files and oriented for display. Reads and binarises here, so the report only draws.

Arrays are (Z, Y, X) = (k, j, i) as SimpleITK gives them; a displayed slice is (row, column) with
anterior up and the patient's right on the screen's left (radiological convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..images import same_geometry
from ..lesions import axial_axis
from .case import CaseResult, EvaluationConfig, binarise_prediction
from .loading import load_case, read_mask
from .pairing import CaseFiles

ZOOM_HALF_WIDTH_MM = 25.0  # the zoomed panel shows ~50 mm around the error
ZOOM_MIN_HALF_VOXELS = 8


@dataclass
class CaseSlice:
    """One displayed slice of a case: background, ground truth and prediction, (row, column)."""

    background: np.ndarray  # float32; zeros when there is neither an image nor a probability map
    gt: np.ndarray  # bool
    pred: np.ndarray  # bool (the prediction as evaluated: thresholded like the metrics)
    background_name: str  # "CE-T1", "probability map" or "masks only"
    slice_index: int  # along the axial array axis
    focus: str  # what the slice goes through, e.g. "largest missed lesion (12.3 mm)"
    aspect: float  # row spacing / column spacing (mm / mm)
    zoom: tuple[slice, slice]  # (rows, columns) of the zoomed panel


def focus(case: CaseResult) -> tuple[tuple[float, float, float] | None, str]:
    """Centroid (k, j, i) of the largest missed GT lesion or FP, whichever is larger."""
    missed = [g for g in case.gt_lesions if not g.detected and not g.excluded]
    fps = [p for p in case.pred_lesions if not p.true_positive]
    best = None
    for item, what in [(g, "missed lesion") for g in missed] + [(p, "false positive") for p in fps]:
        if best is None or item.voxels > best[0].voxels:
            best = (item, what)
    if best is None and case.gt_lesions:
        g = max(case.gt_lesions, key=lambda x: x.voxels)
        return g.centroid_kji, f"largest lesion (Dice {g.dice:.2f})"
    if best is None:
        return None, "no lesion"
    item, what = best
    return item.centroid_kji, f"largest {what} ({item.longest_diameter_mm:.1f} mm)"


def display_axes(direction, axis: int) -> tuple[int, int]:
    """(row, column) array axes of a slice across ``axis``: rows run along LPS y (A -> P)."""
    d = np.reshape(direction, (3, 3))
    in_plane = [a for a in range(3) if a != axis]
    row_axis = max(in_plane, key=lambda a: abs(d[1, 2 - a]))  # array axis a is image axis 2 - a
    return row_axis, next(a for a in in_plane if a != row_axis)


def radiological_slice(a: np.ndarray, direction, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` across array ``axis`` of a (Z, Y, X) array, oriented for display:
    anterior up, patient right on the screen's left (radiological convention)."""
    d = np.reshape(direction, (3, 3))
    row_axis, col_axis = display_axes(direction, axis)
    plane = np.take(a, index, axis=axis)
    if [x for x in range(3) if x != axis].index(row_axis) == 1:
        plane = plane.T
    if d[1, 2 - row_axis] < 0:
        plane = plane[::-1]
    if d[0, 2 - col_axis] < 0:
        plane = plane[:, ::-1]
    return plane


def _background(files: CaseFiles, reference: sitk.Image, probability) -> tuple[np.ndarray | None, str]:
    """The CE-T1 when it is given and on the ground truth's grid (size, spacing, origin and
    direction), else the probability map."""
    if files.image is not None:
        try:
            img = read_mask(files.image, "CE-T1")
            if same_geometry(img, reference):
                return sitk.GetArrayFromImage(img).astype(np.float32), "CE-T1"
        except Exception:  # a thumbnail without its background is still worth showing
            pass
    if probability is not None:
        return probability, "probability map"
    return None, "masks only"


def case_slice(case: CaseResult, files: CaseFiles, config: EvaluationConfig) -> CaseSlice | None:
    """The slice of ``case`` through :func:`focus`, read from its files and binarised as the
    evaluation did (``config.point``); ``None`` when the files cannot be read again."""
    try:
        loaded = load_case(files)
    except Exception:  # the case was evaluated; a thumbnail must never break the report
        return None
    gt = sitk.GetArrayFromImage(loaded.gt) > 0
    lab = sitk.GetArrayFromImage(loaded.pred)
    prob = None if loaded.probability is None else sitk.GetArrayFromImage(loaded.probability)
    pred = binarise_prediction(lab, prob, config.point, loaded.gt.GetSpacing())
    background, bg_name = _background(files, loaded.gt, prob)
    axis = axial_axis(loaded.gt)
    centre, what = focus(case)
    if centre is None:
        centre = tuple(s / 2 for s in gt.shape)
    s = int(round(centre[axis]))
    bg3 = background if background is not None else np.zeros(gt.shape, np.float32)
    spacing_zyx = loaded.gt.GetSpacing()[::-1]
    direction = loaded.gt.GetDirection()
    row_axis, col_axis = display_axes(direction, axis)

    def view(a):
        return radiological_slice(a, direction, axis, s)

    g2 = view(gt)
    marker = np.zeros(gt.shape, bool)
    marker[tuple(int(round(c)) for c in centre)] = True
    c = np.argwhere(view(marker))
    c = c[0] if len(c) else np.array(g2.shape) // 2
    half = [max(ZOOM_MIN_HALF_VOXELS, int(round(ZOOM_HALF_WIDTH_MM / spacing_zyx[a]))) for a in (row_axis, col_axis)]
    zoom = (slice(max(c[0] - half[0], 0), c[0] + half[0]), slice(max(c[1] - half[1], 0), c[1] + half[1]))
    return CaseSlice(view(bg3), g2, view(pred), bg_name, s, what,
                     spacing_zyx[row_axis] / spacing_zyx[col_axis], zoom)
