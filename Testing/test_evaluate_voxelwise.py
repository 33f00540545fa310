"""Voxel-wise metrics against scikit-learn and MONAI on the same masks; DeLong and CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from BrainMetSegLib.evaluate import lesionwise as lw
from BrainMetSegLib.evaluate import stats, threshold, voxelwise


def random_case(seed: int, shape=(24, 24, 24)):
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    gt = (z - 12) ** 2 + (y - 10) ** 2 + (x - 13) ** 2 <= rng.uniform(3, 6) ** 2
    prob = np.clip(0.6 * gt + rng.normal(0.2, 0.2, shape), 0, 1).astype(np.float32)
    prob = np.round(prob, 2)  # ties, as thresholded / quantised maps have
    brain = (z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 11 ** 2
    return gt, prob, brain


@pytest.mark.parametrize("seed", range(4))
def test_voxel_metrics_match_sklearn(seed):
    gt, prob, brain = random_case(seed)
    pred = prob > 0.5
    m = voxelwise.voxel_metrics(gt, pred, prob, brain)
    y, p, s = gt[brain], pred[brain], prob[brain]
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert m["dice"] == pytest.approx(skm.f1_score(y, p))
    assert m["f1"] == m["dice"]
    assert m["iou"] == pytest.approx(skm.jaccard_score(y, p))
    assert m["precision"] == pytest.approx(skm.precision_score(y, p))
    assert m["recall"] == pytest.approx(skm.recall_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, p).ravel()
    assert (m["tp_voxels"], m["fp_voxels"], m["fn_voxels"], m["tn_voxels"]) == (tp, fp, fn, tn)
    assert m["specificity"] == pytest.approx(tn / (tn + fp))


def test_region_restricts_counts_and_reports_outside_voxels():
    gt = np.zeros((10, 10, 10), bool)
    gt[1:3, 1:3, 1:3] = True
    region = np.ones_like(gt)
    region[1, :, :] = False
    m = voxelwise.voxel_metrics(gt, gt, None, region)
    assert m["tp_voxels"] == 4 and m["gt_voxels_outside_region"] == 4 and math.isnan(m["auc"])


def test_empty_voxel_conventions():
    e = np.zeros((8, 8, 8), bool)
    full = e.copy()
    full[2:4, 2:4, 2:4] = True
    both = voxelwise.voxel_metrics(e, e, e.astype(float))
    assert both["dice"] == 1 and both["iou"] == 1
    assert all(math.isnan(both[k]) for k in ("precision", "recall", "mcc", "auc"))
    fp_only = voxelwise.voxel_metrics(e, full)
    assert fp_only["dice"] == 0 and fp_only["precision"] == 0 and math.isnan(fp_only["recall"])
    assert math.isnan(fp_only["mcc"])
    # scikit-learn returns 0 where we return NaN (documented difference)
    assert skm.matthews_corrcoef(e.ravel(), full.ravel()) == 0
    miss = voxelwise.voxel_metrics(full, e)
    assert miss["dice"] == 0 and miss["recall"] == 0 and math.isnan(miss["precision"])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.7, 2.0)])
def test_hd95_matches_monai(spacing):
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(3)
    z, y, x = np.ogrid[:30, :30, :30]
    a = (z - 15) ** 2 + (y - 14) ** 2 + (x - 15) ** 2 <= 36
    b = ((z - 16) ** 2 + (y - 15) ** 2 + (x - 13) ** 2 <= 30) | (rng.random((30, 30, 30)) > 0.9995)
    ours = lw.hd95_mm(a, b, spacing)
    theirs = compute_hausdorff_distance(b[None, None].astype(np.float32), a[None, None].astype(np.float32),
                                        percentile=95, spacing=spacing[::-1])
    assert ours == pytest.approx(float(theirs.item()), rel=1e-6)


# ----------------------------------------------------------------------------- DeLong

def delong_textbook(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """DeLong et al. 1988 by the O(m n) definition (structural components)."""
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return auc, v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def as_singleton_clusters(pos: np.ndarray, neg: np.ndarray):
    values = np.unique(np.concatenate([pos, neg]))
    ph = np.zeros((len(pos) + len(neg), len(values)))
    nh = np.zeros_like(ph)
    ph[np.arange(len(pos)), np.searchsorted(values, pos)] = 1
    nh[len(pos) + np.arange(len(neg)), np.searchsorted(values, neg)] = 1
    return ph, nh


def test_delong_equals_textbook_with_one_observation_per_cluster():
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(1.0, 1.0, 40), 1)
    neg = np.round(rng.normal(0.0, 1.0, 55), 1)
    auc, var = delong_textbook(pos, neg)
    est = stats.clustered_auc(*as_singleton_clusters(pos, neg))
    assert est.auc == pytest.approx(auc)
    assert est.variance == pytest.approx(var, rel=1e-9)
    assert est.auc == pytest.approx(skm.roc_auc_score(np.r_[np.ones(40), np.zeros(55)], np.r_[pos, neg]))


def test_clustered_delong_variance_agrees_with_cluster_bootstrap():
    rng = np.random.default_rng(1)
    bins = 50
    pos_h, neg_h = [], []
    for _ in range(30):  # patients: a patient effect shifts all their scores (within-cluster correlation)
        shift = rng.normal(0, 0.8)
        p = np.clip(((rng.normal(1.0 + shift, 1.0, rng.integers(5, 40)) + 4) / 10 * bins).astype(int), 0, bins - 1)
        n = np.clip(((rng.normal(0.0 + shift, 1.0, 200) + 4) / 10 * bins).astype(int), 0, bins - 1)
        pos_h.append(np.bincount(p, minlength=bins))
        neg_h.append(np.bincount(n, minlength=bins))
    pos_h, neg_h = np.array(pos_h), np.array(neg_h)
    est = stats.clustered_auc(pos_h, neg_h)
    boot = []
    for _ in range(1500):
        idx = rng.integers(0, len(pos_h), len(pos_h))
        boot.append(stats.clustered_auc(pos_h[idx], neg_h[idx]).auc)
    assert est.variance == pytest.approx(np.var(boot, ddof=1), rel=0.25)
    # ignoring the clustering underestimates the variance
    naive = stats.clustered_auc(pos_h.sum(0)[None], neg_h.sum(0)[None])
    assert math.isnan(naive.variance)  # one cluster: undefined


def test_compare_independent_aucs_and_wilson():
    a = stats.AUCEstimate(0.8, 0.03 ** 2, 10, 10, 10)
    b = stats.AUCEstimate(0.7, 0.04 ** 2, 10, 10, 10)
    r = stats.compare_independent_aucs(a, b)
    assert r["z"] == pytest.approx(0.1 / 0.05)
    assert r["p"] == pytest.approx(0.0455, abs=1e-4)
    assert r["ci_low"] == pytest.approx(0.1 - 1.96 * 0.05, abs=1e-3)
    lo, hi = stats.wilson_ci(8, 10)  # textbook value 0.490-0.943
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)


def test_threshold_sweep_youden_and_f1():
    # positives at probability 0.8, negatives at 0.1 (900) and 0.6 (100): any threshold in
    # (0.6, 0.8] separates them; the tie rule picks the highest such threshold.
    bins = 100
    pos = np.zeros(bins)
    neg = np.zeros(bins)
    pos[80] = 50
    neg[10], neg[60] = 900, 100
    rows = threshold.voxel_sweep(pos, neg)
    sel = threshold.select_thresholds(rows, [], "youden")
    assert 0.6 < sel["suggested_threshold"] <= 0.8
    best = sel["operating_points"]["youden"]
    assert best["sensitivity"] == 1 and best["specificity"] == 1
    assert sel["operating_points"]["voxel-f1"]["f1"] == 1
    fpr, tpr = threshold.roc_curve(pos, neg)
    assert tpr[-1] == 1 and fpr[-1] == 1


def test_thumbnail_orientation_is_radiological():
    from BrainMetSegLib.evaluate.thumbnails import radiological_slice

    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    identity = (1, 0, 0, 0, 1, 0, 0, 0, 1)  # LPS: rows already A -> P, columns R -> L
    assert np.array_equal(radiological_slice(a, identity, 0, 1), a[1])
    ras_stored = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # NIfTI-style RAS storage: both in-plane axes flipped
    assert np.array_equal(radiological_slice(a, ras_stored, 0, 1), a[1, ::-1, ::-1])


def test_size_plot_with_empty_and_undetected_bins():
    from BrainMetSegLib.evaluate.cohort import sensitivity_by_size
    from BrainMetSegLib.evaluate.figures import size_plot

    rows = sensitivity_by_size([{"size_bin": "<3 mm", "detected": False}] * 4
                               + [{"size_bin": ">=10 mm", "detected": True}] * 3)
    assert rows[0]["sensitivity"] == 0 and math.isnan(rows[1]["sensitivity"]) and rows[2]["sensitivity"] == 1
    assert size_plot(rows).startswith("data:image/png;base64,")
