"""Evaluation of one case: voxel-wise and lesion-wise metrics, histograms and FROC counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..operating_point import OperatingPoint, lesion_labels_array
from ..options import number
from . import lesionwise, voxelwise

DEFAULT_FROC_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


@dataclass(frozen=True)
class EvaluationConfig:
    """How predictions are compared with ground truth.

    match: lesion matching rule, ``overlap`` | ``dice0.1`` | ``brats`` (see lesionwise).
    threshold: re-threshold the probability map with this detection threshold when one
        exists (:mod:`~BrainMetSegLib.operating_point`, as ``segment`` does); None uses the
        predicted label map (> 0).
    min_volume_mm3: detected lesions smaller than this are removed after re-thresholding
        (not applied to a given label map, which the segmenter already filtered).
    outline_threshold: re-thresholded lesions are drawn out to this probability (None: at the
        detection threshold).
    fp_size_limit_mm: false positives are also counted only from this longest diameter on.
    froc_thresholds: probability thresholds swept for FROC / threshold selection.
    """

    match: str = "overlap"
    threshold: float | None = None
    min_volume_mm3: float = 0.0
    outline_threshold: float | None = None
    fp_size_limit_mm: float = lesionwise.FP_SIZE_LIMIT_MM
    froc_thresholds: tuple[float, ...] = DEFAULT_FROC_THRESHOLDS
    hist_bins: int = voxelwise.HIST_BINS

    def prediction_label(self) -> str:
        """How the predicted mask is made, for tables and the report."""
        return "label map > 0" if self.point is None else self.point.describe()

    @property
    def point(self) -> OperatingPoint | None:
        """The operating point re-thresholding applies (None: the label map is used)."""
        if self.threshold is None:
            return None
        return OperatingPoint(self.threshold, self.min_volume_mm3, self.outline_threshold)

    def point_at(self, threshold: float) -> OperatingPoint:
        """The operating point with another detection threshold (FROC sweeps): the outline
        threshold, if any, capped at it."""
        outline = None if self.outline_threshold is None else min(self.outline_threshold, threshold)
        return OperatingPoint(threshold, self.min_volume_mm3, outline)

    def __post_init__(self):
        if self.match not in lesionwise.RULES:
            raise ValueError(f"match must be one of {lesionwise.RULES}, not {self.match!r}")
        _ = self.point  # checks the operating values (one rule: OperatingPoint)
        number(self.min_volume_mm3, "minimum volume (mm^3)", low=0, error=ValueError)
        if self.outline_threshold is not None and self.threshold is None:
            raise ValueError("an outline threshold needs a detection threshold")
        if self.min_volume_mm3 > 0 and self.threshold is None:  # else quietly unused
            raise ValueError("a minimum volume needs a detection threshold (label maps are evaluated as given)")


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
                        point: OperatingPoint | None, spacing_xyz) -> np.ndarray:
    """The predicted mask: the lesions of the probability map at ``point`` (the segment
    command's rule, :func:`~BrainMetSegLib.operating_point.lesion_labels_array`) when both
    exist, else labels > 0."""
    if point is not None and probability is not None:
        return lesion_labels_array(probability, spacing_xyz, point) > 0
    if labels is None:
        raise ValueError("no predicted label map and no probability map + threshold")
    return labels > 0


def froc_counts(gt: np.ndarray, probability: np.ndarray, config: EvaluationConfig, spacing_xyz) -> list[dict]:
    """Detection counts per detection threshold of ``config.froc_thresholds`` (FROC points of
    one case), each lesion outlined as ``config`` says."""
    thresholds = config.froc_thresholds
    lo = min(min(thresholds), config.outline_threshold or 1.0)
    union = gt | (probability > lo)
    box = ndimage.find_objects(union.astype(np.uint8))
    if box:  # work on the bounding box of everything that can matter, 2 voxels of margin
        box = lesionwise._pad_box(box[0], gt.shape, 2)
        gt, probability = gt[box], probability[box]
    rows = []
    for t in thresholds:
        pred = binarise_prediction(None, probability, config.point_at(t), spacing_xyz)
        n_gt, det, fp = lesionwise.detection_counts(gt, pred, config.match, spacing_xyz)
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
    pred = binarise_prediction(lab, prob, config.point, spacing_xyz)

    metrics = {"case_id": case_id, "match_rule": config.match,
               "prediction_source": config.prediction_label() if prob is not None else "label map > 0",
               "brain_mask": region is not None}
    metrics.update(voxelwise.voxel_metrics(g, pred, prob, region))
    match = lesionwise.match_lesions(g, pred, spacing_xyz, config.match, direction, prob)
    metrics.update(lesionwise.summarise(match, config.fp_size_limit_mm))
    result = CaseResult(case_id, metrics, match.gt, match.pred)
    if prob is not None:
        result.pos_hist, result.neg_hist = voxelwise.histograms(g, prob, region, config.hist_bins)
        result.froc = froc_counts(g, prob, config, spacing_xyz)
    return result
