"""Evaluation of one case: voxel-wise and lesion-wise metrics, histograms and FROC counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..lesions import label_instances
from . import lesionwise, voxelwise

DEFAULT_FROC_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


@dataclass(frozen=True)
class EvaluationConfig:
    """How predictions are compared with ground truth.

    match: lesion matching rule, ``overlap`` | ``dice0.1`` | ``brats`` (see lesionwise).
    threshold: re-threshold the probability map at this value (probability > threshold)
        when one exists; None uses the predicted label map (> 0).
    min_volume_mm3: predicted lesions smaller than this are removed after re-thresholding
        (not applied to a given label map, which the segmenter already filtered).
    fp_size_limit_mm: false positives are also counted only from this longest diameter on.
    froc_thresholds: probability thresholds swept for FROC / threshold selection.
    """

    match: str = "overlap"
    threshold: float | None = None
    min_volume_mm3: float = 0.0
    fp_size_limit_mm: float = lesionwise.FP_SIZE_LIMIT_MM
    froc_thresholds: tuple[float, ...] = DEFAULT_FROC_THRESHOLDS
    hist_bins: int = voxelwise.HIST_BINS

    def prediction_label(self) -> str:
        """How the predicted mask is made, for tables and the report."""
        return "label map > 0" if self.threshold is None else f"probability > {self.threshold:g}"

    def __post_init__(self):
        if self.match not in lesionwise.RULES:
            raise ValueError(f"match must be one of {lesionwise.RULES}, not {self.match!r}")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), not {self.threshold}")


@dataclass
class CaseResult:
    """Everything measured on one case."""

    case_id: str
    metrics: dict
    gt_lesions: list[lesionwise.GTLesion]
    pred_lesions: list[lesionwise.PredLesion]
    pos_hist: np.ndarray | None = None  # GT-positive voxels per probability bin (inside region)
    neg_hist: np.ndarray | None = None
    froc: list[dict] = field(default_factory=list)  # threshold, gt_lesions, detected, fp


def _array(image: sitk.Image | np.ndarray | None, dtype=None):
    if image is None:
        return None
    a = sitk.GetArrayFromImage(image) if isinstance(image, sitk.Image) else np.asarray(image)
    return a.astype(dtype) if dtype is not None else a


def binarise_prediction(labels: np.ndarray | None, probability: np.ndarray | None,
                        threshold: float | None, spacing_xyz, min_volume_mm3: float = 0.0) -> np.ndarray:
    """The predicted mask: probability > threshold without lesions under ``min_volume_mm3``
    (the segment command's rule, :func:`~BrainMetSegLib.lesions.label_instances`) when both
    exist, else labels > 0."""
    if threshold is not None and probability is not None:
        if min_volume_mm3 > 0:
            return label_instances(probability > threshold, spacing_xyz, min_volume_mm3) > 0
        return probability > threshold
    if labels is None:
        raise ValueError("no predicted label map and no probability map + threshold")
    return labels > 0


def froc_counts(gt: np.ndarray, probability: np.ndarray, thresholds, rule: str, spacing_xyz,
                min_volume_mm3: float = 0.0) -> list[dict]:
    """Detection counts per probability threshold (FROC points of one case)."""
    lo = min(thresholds)
    union = gt | (probability > lo)
    box = ndimage.find_objects(union.astype(np.uint8))
    if box:  # work on the bounding box of everything that can matter, 2 voxels of margin
        box = lesionwise._pad_box(box[0], gt.shape, 2)
        gt, probability = gt[box], probability[box]
    rows = []
    for t in thresholds:
        pred = binarise_prediction(None, probability, t, spacing_xyz, min_volume_mm3)
        n_gt, det, fp = lesionwise.detection_counts(gt, pred, rule, spacing_xyz)
        rows.append({"threshold": float(t), "gt_lesions": n_gt, "detected": det, "fp": fp})
    return rows


def evaluate_case(gt: sitk.Image | np.ndarray, pred_labels: sitk.Image | np.ndarray | None,
                  probability: sitk.Image | np.ndarray | None = None,
                  brain_mask: sitk.Image | np.ndarray | None = None,
                  config: EvaluationConfig | None = None, case_id: str = "case",
                  spacing_xyz=None, direction=None) -> CaseResult:
    """Compare one prediction with its ground truth.

    Images must share geometry (checked by the caller for files). With numpy arrays
    (Z, Y, X), pass ``spacing_xyz`` (mm) and optionally ``direction``; with SimpleITK
    images they are taken from ``gt``.
    Voxel-wise metrics are computed inside ``brain_mask`` (whole volume without it);
    lesion-wise metrics on the whole volume (as BraTS does), so lesions cut by the mask
    still count.
    """
    config = config or EvaluationConfig()
    if isinstance(gt, sitk.Image):
        spacing_xyz = gt.GetSpacing()
        direction = gt.GetDirection()
    if spacing_xyz is None:
        raise ValueError("spacing_xyz is needed with numpy arrays")
    g = _array(gt) > 0
    lab = _array(pred_labels)
    prob = _array(probability, np.float32)
    region = _array(brain_mask)
    region = None if region is None else region > 0
    pred = binarise_prediction(lab, prob, config.threshold, spacing_xyz, config.min_volume_mm3)

    metrics = {"case_id": case_id, "match_rule": config.match,
               "prediction_source": config.prediction_label() if prob is not None else "label map > 0",
               "brain_mask": region is not None}
    metrics.update(voxelwise.voxel_metrics(g, pred, prob, region))
    match = lesionwise.match_lesions(g, pred, spacing_xyz, config.match, direction, prob)
    metrics.update(lesionwise.summarise(match, config.fp_size_limit_mm))
    result = CaseResult(case_id, metrics, match.gt, match.pred)
    if prob is not None:
        result.pos_hist, result.neg_hist = voxelwise.histograms(g, prob, region, config.hist_bins)
        result.froc = froc_counts(g, prob, config.froc_thresholds, config.match, spacing_xyz,
                                  config.min_volume_mm3)
    return result
