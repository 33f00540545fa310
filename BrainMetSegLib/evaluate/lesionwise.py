"""Lesion-wise matching of predicted and ground-truth lesions, and per-lesion metrics.

Three matching rules, as in the literature (see SPEC.md, "Evaluation conventions"):

``overlap``
    Lesions are 26-connected components. A GT lesion is detected when any
    predicted lesion shares a voxel with it; a predicted lesion is a true
    positive when it shares a voxel with any GT lesion, otherwise a false
    positive. Split predictions (two predicted lesions on one GT lesion) give
    one detection and two true-positive predictions; a merged prediction (one
    predicted lesion over two GT lesions) detects both.
``dice0.1`` (Wald et al. 2025)
    As ``overlap``, but a GT lesion is detected only when the Dice between it
    and the union of the predicted lesions touching it is > 0.1. A predicted
    lesion is a true positive only when it belongs to a detected GT lesion's
    match; otherwise it is a false positive.
``brats`` (BraTS-METS 2023, the published ``brats_metrics.py``)
    GT components (26-connected) that join after one dilation with the
    18-neighbourhood (``generate_binary_structure(3, 2)``) are merged into one
    lesion; a predicted component belongs to a GT lesion when it touches the GT
    lesion dilated once (same structure); predicted components touching no
    dilated GT lesion are false positives. GT lesions with volume <= 2 mm^3
    (the challenge's ``lesion_volume_thresh`` for BraTS-MET, compared against
    volume in mm^3 as the published code does) are dropped from the counts and
    from the lesion-wise scores; predictions touching them are not false
    positives.

Per-lesion Dice and HD95 are between a GT lesion and the union of its matched
predicted lesions (the BraTS definition). HD95 (mm) is the larger of the two
directed 95th percentiles of distances between the surface voxels of the two
masks (6-connected erosion boundary), in physical mm (anisotropic spacing
respected); it is NaN for a missed lesion (BraTS scores a miss as 374 mm in its
lesion-wise HD95, reproduced in :func:`summarise`).

Arrays are (Z, Y, X) = (k, j, i); ``spacing_xyz`` is (x, y, z) mm as SimpleITK gives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage

from ..lesions import Frame, component_diameters_mm

RULES = ("overlap", "dice0.1", "brats")

# BraTS-METS 2023 parameters (get_challenge_parameters("BraTS-MET") in the published code).
BRATS_DILATION_ITERATIONS = 1
BRATS_MIN_VOLUME_MM3 = 2.0
BRATS_HD95_MISS_MM = 374.0  # the published penalty for a missed or false-positive lesion
WALD_DICE_THRESHOLD = 0.1

# Size bins on the longest 3D diameter (mm): < 3, 3-10, >= 10 (Topff et al. / SPEC.md).
SIZE_BINS_MM = (3.0, 10.0)
SIZE_BIN_NAMES = ("<3 mm", "3-10 mm", ">=10 mm")
FP_SIZE_LIMIT_MM = 10.0

_DILATION_STRUCTURE = ndimage.generate_binary_structure(3, 2)


def size_bin(diameter_mm: float) -> str:
    """Name of the size bin for a longest diameter in mm."""
    if diameter_mm < SIZE_BINS_MM[0]:
        return SIZE_BIN_NAMES[0]
    if diameter_mm < SIZE_BINS_MM[1]:
        return SIZE_BIN_NAMES[1]
    return SIZE_BIN_NAMES[2]


@dataclass
class GTLesion:
    """One ground-truth lesion and how the prediction met it."""

    gt_id: int
    voxels: int
    volume_mm3: float
    longest_diameter_mm: float
    size_bin: str
    matched_pred_ids: list[int]
    detected: bool
    dice: float
    hd95_mm: float
    excluded: bool = False  # BraTS: too small to count (volume <= 2 mm^3)
    centroid_kji: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # what a reader of the lesion table sees for this lesion when it is detected: the matched
    # predicted lesions' summed volume and their largest longest diameter (NaN when missed)
    pred_volume_mm3: float = math.nan
    pred_longest_diameter_mm: float = math.nan


@dataclass
class PredLesion:
    """One predicted lesion (26-connected component of the prediction)."""

    pred_id: int
    voxels: int
    volume_mm3: float
    longest_diameter_mm: float
    true_positive: bool
    matched_gt_ids: list[int]
    max_probability: float = math.nan
    centroid_kji: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class LesionMatch:
    """All lesions of one case under one matching rule."""

    rule: str
    gt: list[GTLesion] = field(default_factory=list)
    pred: list[PredLesion] = field(default_factory=list)


def gt_components(gt: np.ndarray, rule: str) -> np.ndarray:
    """GT lesion ids (int32, 0 = background) for a rule: 26-connected components,
    merged by one 18-neighbourhood dilation for ``brats``."""
    gt = np.asarray(gt, bool)
    cc = cc3d.connected_components(gt, connectivity=26).astype(np.int32)
    if rule != "brats" or cc.max() == 0:
        return cc
    dilated = ndimage.binary_dilation(gt, _DILATION_STRUCTURE, iterations=BRATS_DILATION_ITERATIONS)
    merged = cc3d.connected_components(dilated, connectivity=26).astype(np.int32)
    merged[~gt] = 0
    # renumber 1..N in order of first appearance (dilated components without GT cannot exist)
    ids = np.unique(merged[merged > 0])
    lut = np.zeros(int(merged.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[merged]


def hd95_mm(a: np.ndarray, b: np.ndarray, spacing_xyz) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between two masks' surface voxels.

    max(P95 of distances from a's surface to b's surface, P95 the other way). NaN if a
    mask is empty. Works on the bounding box of both masks (padded by one voxel) for speed.
    """
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if not a.any() or not b.any():
        return math.nan
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    a = np.pad(a[box], 1)
    b = np.pad(b[box], 1)
    sampling = tuple(float(s) for s in spacing_xyz[::-1])
    surf_a = a & ~ndimage.binary_erosion(a)
    surf_b = b & ~ndimage.binary_erosion(b)
    d_to_b = ndimage.distance_transform_edt(~surf_b, sampling=sampling)
    d_to_a = ndimage.distance_transform_edt(~surf_a, sampling=sampling)
    return float(max(np.percentile(d_to_b[surf_a], 95), np.percentile(d_to_a[surf_b], 95)))


def _pad_box(box: tuple[slice, ...], shape, margin: int) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True))


def _centroids(labels: np.ndarray, n: int) -> np.ndarray:
    """(n, 3) voxel centroids (Z, Y, X) of components 1..n in one pass (ndimage.center_of_mass
    makes several passes over the whole volume, 7x slower on a head-sized grid)."""
    if not n:
        return np.zeros((0, 3))
    return cc3d.statistics(np.ascontiguousarray(labels))["centroids"][1:n + 1]


def match_lesions(gt: np.ndarray, pred: np.ndarray, spacing_xyz, rule: str = "overlap",
                  direction=None, probability: np.ndarray | None = None) -> LesionMatch:
    """Match GT and predicted lesions of one case under ``rule`` (see module docstring).

    gt, pred: (Z, Y, X) masks (any non-zero voxel is lesion; instance ids in the
    inputs are ignored, components are recomputed). spacing_xyz: voxel size (mm).
    direction: row-major 3x3 direction cosines (diameters on oblique grids).
    probability: optional (Z, Y, X) map for the predicted lesions' max probability.
    """
    if rule not in RULES:
        raise ValueError(f"unknown matching rule {rule!r}; choose one of {', '.join(RULES)}")
    gt = np.asarray(gt) > 0
    pred = np.asarray(pred) > 0
    if gt.shape != pred.shape:
        raise ValueError(f"GT shape {gt.shape} != prediction shape {pred.shape}")
    frame = Frame.from_spacing(spacing_xyz, direction)
    vvol = float(np.prod(spacing_xyz))

    gt_lab, pred_lab, gt_sizes, pred_sizes, inter = _components_and_overlaps(gt, pred, rule)
    n_gt, n_pred = len(gt_sizes) - 1, len(pred_sizes) - 1
    decisions = _decide(gt_lab, pred_lab, gt_sizes, pred_sizes, inter, rule, vvol)
    gt_boxes = ndimage.find_objects(gt_lab)
    pred_boxes = ndimage.find_objects(pred_lab)

    gt_diam = component_diameters_mm(gt_lab, n_gt, frame)
    pred_diam = component_diameters_mm(pred_lab, n_pred, frame)
    gt_centroids = _centroids(gt_lab, n_gt)
    pred_centroids = _centroids(pred_lab, n_pred)
    pred_maxp = (ndimage.maximum(probability, pred_lab, range(1, n_pred + 1))
                 if probability is not None and n_pred else [math.nan] * n_pred)

    gt_rows: list[GTLesion] = []
    matched_gt: dict[int, list[int]] = {p: [] for p in range(1, n_pred + 1)}
    for g, d in enumerate(decisions.gt, start=1):
        if d.candidates:
            union_box = gt_boxes[g - 1]
            for p in d.candidates:
                union_box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                                  for a, b in zip(union_box, pred_boxes[p - 1], strict=True))
            hd = hd95_mm(gt_lab[union_box] == g, np.isin(pred_lab[union_box], d.candidates), spacing_xyz)
        else:
            hd = math.nan
        if d.detected:
            for p in d.candidates:
                matched_gt[p].append(g)
        diameter = float(gt_diam[g - 1])
        centroid = tuple(float(c) for c in gt_centroids[g - 1])
        drawn = ((float(sum(pred_sizes[p] for p in d.candidates) * vvol),
                  float(max(pred_diam[p - 1] for p in d.candidates))) if d.detected and d.candidates
                 else (math.nan, math.nan))
        gt_rows.append(GTLesion(g, int(gt_sizes[g]), float(gt_sizes[g] * vvol), diameter, size_bin(diameter),
                                d.candidates, d.detected, d.dice, hd, d.excluded, centroid, *drawn))

    pred_rows: list[PredLesion] = []
    for p in range(1, n_pred + 1):
        centroid = tuple(float(c) for c in pred_centroids[p - 1])
        pred_rows.append(PredLesion(p, int(pred_sizes[p]), float(pred_sizes[p] * vvol), float(pred_diam[p - 1]),
                                    p in decisions.tp_preds, matched_gt[p], float(pred_maxp[p - 1]), centroid))
    return LesionMatch(rule, gt_rows, pred_rows)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def summarise(match: LesionMatch, fp_size_limit_mm: float = FP_SIZE_LIMIT_MM) -> dict:
    """Per-case lesion-wise metrics from a :class:`LesionMatch`.

    Conventions for empty cases (also stated in the report):
    - no GT lesion: lesion sensitivity NaN (nothing to detect; excluded from medians);
    - no predicted lesion: lesion PPV NaN;
    - lesion F1 = harmonic mean of sensitivity and PPV; 0 when exactly one side is empty
      (every lesion missed, or every prediction false); NaN when both are empty;
    - BraTS lesion-wise Dice = sum of GT lesion Dice / (GT lesions + FPs), 1 when both are
      empty (as published); lesion-wise HD95 likewise with 374 mm per miss / FP, 0 when empty.
    """
    gts = [g for g in match.gt if not g.excluded]
    n_gt = len(gts)
    n_det = sum(g.detected for g in gts)
    n_pred = len(match.pred)
    n_tp_pred = sum(p.true_positive for p in match.pred)
    fps = [p for p in match.pred if not p.true_positive]
    n_fp = len(fps)
    sens = _ratio(n_det, n_gt)
    ppv = _ratio(n_tp_pred, n_pred)
    if n_gt == 0 and n_pred == 0:
        f1 = math.nan
    elif n_gt == 0 or n_pred == 0:
        f1 = 0.0
    else:
        f1 = 2 * sens * ppv / (sens + ppv) if (sens + ppv) > 0 else 0.0
    denom = n_gt + n_fp
    if denom == 0:
        lw_dice, lw_hd = 1.0, 0.0
    else:
        lw_dice = sum(g.dice for g in gts) / denom
        hd_sum = sum(BRATS_HD95_MISS_MM if math.isnan(g.hd95_mm) else g.hd95_mm for g in gts)
        lw_hd = (hd_sum + n_fp * BRATS_HD95_MISS_MM) / denom
    detected_dice = [g.dice for g in gts if g.detected]
    out = {
        "gt_lesions": n_gt,
        "gt_lesions_excluded": len(match.gt) - n_gt,
        "detected_lesions": n_det,
        "missed_lesions": n_gt - n_det,
        "pred_lesions": n_pred,
        "tp_pred_lesions": n_tp_pred,
        "fp_lesions": n_fp,
        f"fp_lesions_ge{fp_size_limit_mm:g}mm": sum(p.longest_diameter_mm >= fp_size_limit_mm for p in fps),
        "lesion_sensitivity": sens,
        "lesion_ppv": ppv,
        "lesion_f1": f1,
        "lesionwise_dice": lw_dice,
        "lesionwise_hd95_mm": lw_hd,
        "median_lesion_dice": float(np.median(detected_dice)) if detected_dice else math.nan,
    }
    for name in SIZE_BIN_NAMES:
        in_bin = [g for g in gts if g.size_bin == name]
        out[f"gt_lesions_{name}"] = len(in_bin)
        out[f"detected_{name}"] = sum(g.detected for g in in_bin)
        out[f"sensitivity_{name}"] = _ratio(sum(g.detected for g in in_bin), len(in_bin))
    return out


def _components_and_overlaps(gt: np.ndarray, pred: np.ndarray, rule: str):
    """GT components (per ``rule``), 26-connected prediction components, their sizes
    (index 0 = background) and the voxel overlap of every pair: ``inter[g, p]``."""
    gt_lab = gt_components(gt, rule)
    pred_lab = cc3d.connected_components(pred, connectivity=26).astype(np.int32)
    n_gt, n_pred = int(gt_lab.max()), int(pred_lab.max())
    gt_sizes = np.bincount(gt_lab.ravel(), minlength=n_gt + 1)
    pred_sizes = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
    both = (gt_lab > 0) & (pred_lab > 0)
    inter = np.zeros((n_gt + 1, n_pred + 1), np.int64)
    if both.any():
        np.add.at(inter, (gt_lab[both], pred_lab[both]), 1)
    return gt_lab, pred_lab, gt_sizes, pred_sizes, inter


@dataclass(frozen=True)
class _GTDecision:
    candidates: list[int]  # predicted lesion ids that touch the GT lesion (its dilation for brats)
    dice: float  # GT lesion vs the union of its candidates
    detected: bool
    excluded: bool  # brats: too small to count


@dataclass(frozen=True)
class _Decisions:
    gt: list[_GTDecision]  # index g - 1
    tp_preds: set[int]


def _decide(gt_lab: np.ndarray, pred_lab: np.ndarray, gt_sizes, pred_sizes, inter, rule: str,
            voxel_mm3: float) -> _Decisions:
    """The matching rule itself (module docstring): per GT lesion its candidate predictions,
    Dice, detected, excluded; and the set of true-positive predicted lesions."""
    boxes = ndimage.find_objects(gt_lab) if rule == "brats" else []
    decisions: list[_GTDecision] = []
    tp: set[int] = set()
    for g in range(1, len(gt_sizes)):
        if rule == "brats":
            box = _pad_box(boxes[g - 1], gt_lab.shape, BRATS_DILATION_ITERATIONS + 1)
            region = ndimage.binary_dilation(gt_lab[box] == g, _DILATION_STRUCTURE,
                                             iterations=BRATS_DILATION_ITERATIONS)
            cand = [int(p) for p in np.unique(pred_lab[box][region]) if p > 0]
        else:
            cand = [int(p) for p in np.nonzero(inter[g, 1:])[0] + 1]
        dice = 2.0 * float(inter[g, cand].sum()) / float(gt_sizes[g] + pred_sizes[cand].sum())
        detected = dice > WALD_DICE_THRESHOLD if rule == "dice0.1" else bool(cand)
        # BraTS: every prediction touching a dilated GT lesion (kept or dropped) is no FP.
        if detected or rule == "brats":
            tp.update(cand)
        excluded = rule == "brats" and gt_sizes[g] * voxel_mm3 <= BRATS_MIN_VOLUME_MM3
        decisions.append(_GTDecision(cand, dice, bool(detected), bool(excluded)))
    return _Decisions(decisions, tp)


def detection_counts(gt: np.ndarray, pred: np.ndarray, rule: str, spacing_xyz) -> tuple[int, int, int]:
    """(GT lesions counted, detected, false-positive predictions) without per-lesion geometry:
    the same decisions as :func:`match_lesions` + :func:`summarise`, cheap enough for FROC sweeps."""
    gt_lab, pred_lab, gt_sizes, pred_sizes, inter = _components_and_overlaps(
        np.asarray(gt, bool), np.asarray(pred, bool), rule)
    decisions = _decide(gt_lab, pred_lab, gt_sizes, pred_sizes, inter, rule, float(np.prod(spacing_xyz)))
    counted = [d for d in decisions.gt if not d.excluded]
    return len(counted), sum(d.detected for d in counted), len(pred_sizes) - 1 - len(decisions.tp_preds)
