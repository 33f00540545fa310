"""Statistics for cohort comparisons: DeLong AUC variance (clustered), Mann-Whitney U,
bootstrap and Wilson confidence intervals.

DeLong for voxel-wise AUC. Voxels of one patient are not independent, so the
pooled voxel AUC of a subgroup gets the DeLong variance generalised to clustered
data (Obuchowski, Biometrics 1997), with the patient as cluster. With one
observation per cluster it is exactly DeLong et al. (1988) in the fast midrank
form of Sun & Xu (2014). Scores are given as per-cluster histograms over common
bins (ties within a bin count 1/2), which keeps millions of voxels per patient
cheap; with bins = the distinct scores it is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class AUCEstimate:
    auc: float
    variance: float
    n_pos: int
    n_neg: int
    clusters: int

    @property
    def se(self) -> float:
        return math.sqrt(self.variance) if self.variance >= 0 else math.nan

    def ci95(self) -> tuple[float, float]:
        return (self.auc - 1.959964 * self.se, self.auc + 1.959964 * self.se)


def clustered_auc(pos: np.ndarray, neg: np.ndarray) -> AUCEstimate:
    """AUC and its DeLong/Obuchowski variance from per-cluster score histograms.

    pos, neg: (clusters, bins) counts of positive / negative observations per score
    bin, bins in increasing score order. A positive beats a negative in a lower bin
    (counts 1) and ties one in the same bin (counts 1/2).
    """
    pos = np.atleast_2d(np.asarray(pos, np.float64))
    neg = np.atleast_2d(np.asarray(neg, np.float64))
    m_tot, n_tot = pos.sum(), neg.sum()
    if m_tot == 0 or n_tot == 0:
        return AUCEstimate(math.nan, math.nan, int(m_tot), int(n_tot), len(pos))
    pos_b, neg_b = pos.sum(0), neg.sum(0)
    neg_below = np.cumsum(neg_b) - neg_b
    pos_above = pos_b.sum() - np.cumsum(pos_b)
    v10 = (neg_below + 0.5 * neg_b) / n_tot  # per positive in bin b: share of negatives it beats
    v01 = (pos_above + 0.5 * pos_b) / m_tot  # per negative in bin b: share of positives beating it
    auc = float(pos_b @ v10 / m_tot)
    v10_c, v01_c = pos @ v10, neg @ v01
    m_c, n_c = pos.sum(1), neg.sum(1)
    r10 = v10_c - m_c * auc
    r01 = v01_c - n_c * auc
    i10, i01, i_all = int((m_c > 0).sum()), int((n_c > 0).sum()), len(pos)
    if i10 < 2 or i01 < 2:
        return AUCEstimate(auc, math.nan, int(m_tot), int(n_tot), i_all)
    s10 = i10 / ((i10 - 1) * m_tot) * float(r10 @ r10)
    s01 = i01 / ((i01 - 1) * n_tot) * float(r01 @ r01)
    s11 = i_all / (i_all - 1) * float(r10 @ r01)
    var = s10 / m_tot + s01 / n_tot + 2 * s11 / (m_tot * n_tot)
    return AUCEstimate(auc, float(var), int(m_tot), int(n_tot), i_all)


def compare_independent_aucs(a: AUCEstimate, b: AUCEstimate) -> dict:
    """DeLong z-test for two AUCs from independent groups: difference, 95 % CI, p (two-sided)."""
    diff = a.auc - b.auc
    se = math.sqrt(a.variance + b.variance) if np.isfinite(a.variance + b.variance) else math.nan
    if not np.isfinite(se) or se == 0:
        return {"auc_a": a.auc, "auc_b": b.auc, "difference": diff, "ci_low": math.nan,
                "ci_high": math.nan, "z": math.nan, "p": math.nan}
    z = diff / se
    return {"auc_a": a.auc, "auc_b": b.auc, "difference": diff, "ci_low": diff - 1.959964 * se,
            "ci_high": diff + 1.959964 * se, "z": z, "p": float(2 * stats.norm.sf(abs(z)))}


def mann_whitney(a, b) -> tuple[float, float]:
    """Two-sided Mann-Whitney U (U of ``a``, p); NaNs dropped; NaN when a group is empty."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def bootstrap_median_difference_ci(a, b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median(a) - median(b) and its percentile-bootstrap 95 % CI (groups resampled independently)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
    lo, hi = np.percentile(ma - mb, [2.5, 97.5])
    return float(np.median(a) - np.median(b)), float(lo), float(hi)


def wilson_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion; NaNs when n = 0."""
    if n == 0:
        return math.nan, math.nan
    z = 1.959964
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def describe(values) -> dict:
    """n, median, q1, q3, mean, sd of the finite values (NaN-safe)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "median": math.nan, "q1": math.nan, "q3": math.nan, "mean": math.nan,
                "sd": math.nan}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(len(v)), "median": float(med), "q1": float(q1), "q3": float(q3),
            "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan}
