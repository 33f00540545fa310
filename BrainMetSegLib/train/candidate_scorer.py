"""Training a candidate scorer (sklearn, training time only) and exporting it as JSON.

The run-time side is :mod:`BrainMetSegLib.scorer` (numpy only, no pickle). Here: fit a
logistic regression or a gradient-boosted tree ensemble on candidate features, turn the fitted
model into the JSON layout, calibrate its log-odds (Platt or isotonic), and measure what a cut
on the calibrated probability gives (sensitivity, false positives per case), by which the
operating modes are chosen. Candidate records are those of ``docs/training/candidate_data.py``:
``{"case", "features", "gt_of_candidate", "lesions": [{"id", "diameter_mm", "candidates"}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..candidates import FEATURES
from ..scorer import FORMAT


@dataclass
class Pool:
    """Candidates of several cases: features (N, F), label (N,) 1 = overlaps a ground-truth
    lesion, case (N,) index into ``records``."""

    features: np.ndarray
    label: np.ndarray
    case: np.ndarray
    records: list[dict]


def pool(records: list[dict]) -> Pool:
    feats, labels, cases = [], [], []
    for n, rec in enumerate(records):
        f = np.asarray(rec["features"], float).reshape(-1, len(FEATURES))
        feats.append(f)
        labels.append(np.array([bool(g) for g in rec["gt_of_candidate"]], int))
        cases.append(np.full(len(f), n))
    return Pool(np.concatenate(feats), np.concatenate(labels), np.concatenate(cases), records)


def export_logistic(scaler, model) -> dict:
    """A fitted ``StandardScaler`` + ``LogisticRegression`` as the scorer's ``model`` entry."""
    return {"kind": "logistic", "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])}


def export_gbt(model) -> dict:
    """A fitted binary ``GradientBoostingClassifier`` (log-loss) as the scorer's ``model`` entry;
    its raw score equals sklearn's ``decision_function``."""
    init = float(model._raw_predict_init(np.zeros((1, model.n_features_in_)))[0, 0])
    trees = []
    for est in model.estimators_[:, 0]:
        t = est.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    return {"kind": "gbt", "init": init, "learning_rate": float(model.learning_rate), "trees": trees}


def fit_platt(raw: np.ndarray, label: np.ndarray) -> dict:
    """Platt scaling: p = sigmoid(a * raw + b), fitted by (nearly unpenalised) logistic regression."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4).fit(np.asarray(raw).reshape(-1, 1), label)
    return {"kind": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def fit_isotonic(raw: np.ndarray, label: np.ndarray) -> dict:
    """Isotonic calibration as a piecewise-linear map through sklearn's step points."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, label)
    return {"kind": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def scorer_json(model: dict, calibration: dict, modes: dict, candidate_threshold: float,
                training: dict) -> dict:
    return {"format": FORMAT, "version": 1, "candidate_threshold": candidate_threshold,
            "features": list(FEATURES), "model": model, "calibration": calibration,
            "modes": modes, "training": training}


def operating_curve(prob: np.ndarray, p: Pool, cuts: np.ndarray,
                    size_bins: dict[str, tuple[float, float]] | None = None) -> list[dict]:
    """At each cut on the lesion probability: detected ground-truth lesions (any candidate at
    or above the cut overlaps it), false positives (candidates at or above the cut that overlap
    no lesion) per case, and detections per size bin (longest diameter, mm, [low, high))."""
    size_bins = size_bins or {}
    offsets = np.r_[0, np.cumsum([len(r["gt_of_candidate"]) for r in p.records])]
    lesions = [(n, les) for n, r in enumerate(p.records) for les in r["lesions"]]
    best = np.array([max((prob[offsets[n] + c - 1] for c in les["candidates"]), default=-1.0)
                     for n, les in lesions])
    diam = np.array([les["diameter_mm"] for _, les in lesions])
    out = []
    for cut in cuts:
        hit = best >= cut
        row = {"cut": float(cut), "lesions": len(lesions), "detected": int(hit.sum()),
               "sensitivity": float(hit.mean()) if len(hit) else float("nan"),
               "fp_per_case": float(((prob >= cut) & (p.label == 0)).sum() / len(p.records))}
        for name, (lo, hi) in size_bins.items():
            sel = (diam >= lo) & (diam < hi)
            row[name] = [int(hit[sel].sum()), int(sel.sum())]
        out.append(row)
    return out


def lowest_cut(curve: list[dict], max_fp: float, floor: float = 0.0) -> float:
    """The lowest cut at or above ``floor`` whose false positives per case are <= ``max_fp``
    (curves from :func:`operating_curve` with increasing cuts).

    Why a floor: on a tuning set where the scorer leaves few false candidates, the cut that
    spends the whole false-positive budget lands on near-zero probabilities (0.014 for 2.0.0's
    first scorer), i.e. on candidates the calibrated scorer says are almost surely not lesions;
    a new set then brings many more of those."""
    for row in curve:
        if row["cut"] >= floor and row["fp_per_case"] <= max_fp:
            return row["cut"]
    return 1.0


def reliability(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> tuple[list[dict], float]:
    """Reliability diagram rows (equal-width probability bins: count, mean predicted, observed
    fraction) and the expected calibration error (count-weighted |observed - predicted|)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        pred, obs = float(prob[sel].mean()), float(label[sel].mean())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(sel.sum()),
                     "predicted": pred, "observed": obs})
        ece += sel.sum() / len(prob) * abs(obs - pred)
    return rows, float(ece)
