"""Voxel-wise metrics of one case inside an evaluation region (the brain mask).

All metrics count voxels inside ``region`` only (the whole volume when no brain
mask is given). Conventions when a denominator is zero (stated in the report):

- no GT voxel and no predicted voxel: Dice = IoU = F1 = 1 (BraTS "legacy Dice"),
  precision, recall, MCC and AUC NaN (undefined, excluded from medians);
- no GT voxel, some predicted: Dice = IoU = F1 = precision = 0, recall, MCC and AUC NaN;
- GT voxels but no prediction: Dice = IoU = F1 = recall = 0, precision and MCC NaN.

MCC is NaN whenever a row or column of the confusion matrix is empty
(scikit-learn returns 0 there; NaN keeps such cases out of medians rather than
pulling them to 0). AUC is the exact Mann-Whitney AUC with ties counted half
(identical to ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

# Probability histogram resolution for cohort-level AUC, DeLong and threshold sweeps.
HIST_BINS = 10000


def confusion(gt: np.ndarray, pred: np.ndarray, region: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) voxel counts inside ``region`` (bool arrays of equal shape)."""
    gt = np.asarray(gt, bool)
    pred = np.asarray(pred, bool)
    if region is not None:
        region = np.asarray(region, bool)
        gt, pred = gt[region], pred[region]
    n = gt.size
    tp = int(np.count_nonzero(gt & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(gt)) - tp
    return tp, fp, fn, n - tp - fp - fn


def auc_exact(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count 1/2); NaN when a class is empty."""
    m, n = len(scores_pos), len(scores_neg)
    if m == 0 or n == 0:
        return math.nan
    ranks = rankdata(np.concatenate([scores_pos, scores_neg]))
    return float((ranks[:m].sum() - m * (m + 1) / 2.0) / (m * n))


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict:
    """Dice, IoU, F1, MCC, precision, recall, specificity from voxel counts (conventions above)."""
    tp, fp, fn, tn = (float(x) for x in (tp, fp, fn, tn))
    n_gt, n_pred = tp + fn, tp + fp
    if n_gt == 0 and n_pred == 0:
        dice = iou = 1.0
    else:
        dice = 2 * tp / (2 * tp + fp + fn)
        iou = tp / (tp + fp + fn)
    precision = tp / n_pred if n_pred else math.nan
    recall = tp / n_gt if n_gt else math.nan
    specificity = tn / (tn + fp) if (tn + fp) else math.nan
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt(den) if den > 0 else math.nan
    return {"dice": dice, "iou": iou, "f1": dice, "mcc": mcc, "precision": precision,
            "recall": recall, "specificity": specificity}


def histograms(gt: np.ndarray, probability: np.ndarray, region: np.ndarray | None = None,
               bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts of GT-positive and GT-negative voxels per probability bin ([0, 1] in ``bins`` bins)."""
    gt = np.asarray(gt, bool)
    prob = np.asarray(probability, np.float64)
    if region is not None:
        region = np.asarray(region, bool)
        gt, prob = gt[region], prob[region]
    idx = np.clip((prob * bins).astype(np.int64), 0, bins - 1)
    pos = np.bincount(idx[gt], minlength=bins)
    neg = np.bincount(idx[~gt], minlength=bins)
    return pos, neg


def voxel_metrics(gt: np.ndarray, pred: np.ndarray, probability: np.ndarray | None = None,
                  region: np.ndarray | None = None) -> dict:
    """All voxel-wise metrics of one case (plus the counts) inside ``region``.

    gt, pred: (Z, Y, X) masks; probability: (Z, Y, X) map in [0, 1] or None (AUC NaN).
    """
    gt = np.asarray(gt) > 0
    pred = np.asarray(pred) > 0
    reg = np.ones(gt.shape, bool) if region is None else np.asarray(region, bool)
    tp, fp, fn, tn = confusion(gt, pred, reg)
    out = {"tp_voxels": tp, "fp_voxels": fp, "fn_voxels": fn, "tn_voxels": tn,
           "gt_voxels_outside_region": int(np.count_nonzero(gt & ~reg)),
           "pred_voxels_outside_region": int(np.count_nonzero(pred & ~reg))}
    out.update(metrics_from_counts(tp, fp, fn, tn))
    if probability is not None:
        prob = np.asarray(probability, np.float64)[reg]
        g = gt[reg]
        out["auc"] = auc_exact(prob[g], prob[~g])
    else:
        out["auc"] = math.nan
    return out
