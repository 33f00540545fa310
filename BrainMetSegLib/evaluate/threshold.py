"""Operating-threshold selection on a development set.

Voxel-wise sweep on the cohort's pooled probability histograms (voxels inside the
brain masks): sensitivity, specificity, precision, F1 per threshold; the Youden
point maximises sensitivity + specificity - 1 (Grøvik et al. 2020), the max-F1
point maximises voxel F1 (= pooled Dice). The lesion-wise point maximises the
pooled lesion F1 of the FROC sweep. A prediction is ``probability > threshold``.
"""

from __future__ import annotations

import math

import numpy as np

CRITERIA = ("youden", "voxel-f1", "lesion-f1")


def voxel_sweep(pos_hist: np.ndarray, neg_hist: np.ndarray, step: float = 0.01) -> list[dict]:
    """Pooled voxel metrics for thresholds 0, step, ..., < 1 from bin counts over [0, 1].

    A voxel in bin k (probabilities in [k/B, (k+1)/B)) is positive at threshold t = j/B when
    k >= j, i.e. probability >= t (equal to ``> t`` except for values exactly on t).
    """
    pos = np.asarray(pos_hist, np.float64)
    neg = np.asarray(neg_hist, np.float64)
    bins = len(pos)
    p_tot, n_tot = pos.sum(), neg.sum()
    pos_at = np.cumsum(pos[::-1])[::-1]  # positives with bin >= k
    neg_at = np.cumsum(neg[::-1])[::-1]
    rows = []
    for t in np.arange(0.0, 1.0 - 1e-9, step):
        k = int(round(t * bins))
        tp, fp = pos_at[k], neg_at[k]
        sens = tp / p_tot if p_tot else math.nan
        spec = 1 - fp / n_tot if n_tot else math.nan
        prec = tp / (tp + fp) if (tp + fp) else math.nan
        f1 = 2 * tp / (tp + fp + p_tot) if (tp + fp + p_tot) else math.nan
        rows.append({"threshold": round(float(t), 6), "sensitivity": sens, "specificity": spec,
                     "precision": prec, "f1": f1, "youden": sens + spec - 1})
    return rows


def roc_curve(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every bin edge, from (0, 0) to (1, 1)."""
    pos = np.asarray(pos_hist, np.float64)
    neg = np.asarray(neg_hist, np.float64)
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / max(neg.sum(), 1)])
    return fpr, tpr


def _best(rows: list[dict], key: str) -> dict | None:
    good = [r for r in rows if np.isfinite(r.get(key, math.nan))]
    # ties: the highest threshold (fewest false positives) wins
    return max(good, key=lambda r: (r[key], r["threshold"])) if good else None


def select_thresholds(voxel_rows: list[dict], froc_rows: list[dict], criterion: str = "lesion-f1") -> dict:
    """Operating points by each criterion and the suggested threshold by ``criterion``.

    Lesion F1 is the default: voxel-wise Youden favours very low thresholds because
    background voxels outnumber lesion voxels by ~1000:1, so specificity hardly moves
    while sensitivity rises (it is reported for comparison with Grøvik et al.).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    points = {
        "youden": _best(voxel_rows, "youden"),
        "voxel-f1": _best(voxel_rows, "f1"),
        "lesion-f1": _best(froc_rows, "lesion_f1"),
    }
    if points[criterion] is None and criterion == "lesion-f1":
        criterion = "voxel-f1"  # no FROC sweep (no probability maps with lesions)
    chosen = points[criterion]
    return {
        "criterion": criterion,
        "suggested_threshold": chosen["threshold"] if chosen else None,
        "operating_points": {k: v for k, v in points.items() if v is not None},
        "usage": (f"brainmetseg segment ... --threshold {chosen['threshold']:g}" if chosen else
                  "no probability maps: nothing to select"),
    }
