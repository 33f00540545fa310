"""Fit, compare, calibrate and export the candidate scorer (docs/training/candidate_stage.md).

Usage::

    python docs/training/fit_candidate_scorer.py --train CACHE_DIRS... --tune CACHE_DIRS... \
        -o candidate_scorer.json [--report fit_report.json] [--max-fp-default 0.5] [--max-fp-sensitive 2]

CACHE_DIRS hold one folder per case with candidates.json (docs/training/candidate_data.py).
1. A logistic regression (standardised features) and a gradient-boosted tree ensemble are fitted
   on the --train candidates and compared by log-loss and AUC on the --tune candidates; the one
   with the lower tuning log-loss is kept, unless it scores away (below the default floor) a
   tuning lesion >= 10 mm that a candidate reaches.
2. Its log-odds are calibrated on the --tune candidates: Platt and isotonic, compared by
   case-grouped 2-fold cross-fitting on the tuning set (each half calibrated on the other); the
   lower log-loss wins (expected calibration error reported), and the chosen map is refitted on
   the whole tuning set.
3. Modes, chosen on the tuning set: "default" = the lowest cut >= --floor-default (0.5) with at
   most --max-fp-default false positives per case, "sensitive" = the lowest >= --floor-sensitive
   (0.1) with at most --max-fp-sensitive; the possible-lesion band of default reaches down to the
   sensitive cut, that of sensitive down to the cut with twice its false positives (not below a
   fifth of its floor).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler

from BrainMetSegLib.candidates import FEATURES
from BrainMetSegLib.scorer import calibrate, scorer_from_dict
from BrainMetSegLib.train.candidate_scorer import (
    export_gbt,
    export_logistic,
    fit_isotonic,
    fit_platt,
    lowest_cut,
    operating_curve,
    pool,
    reliability,
    scorer_json,
)

LARGE_MM = 10.0  # lesions this large must never be scored away (the card's rule finds them all)
CUTS = np.round(np.r_[np.arange(0.0, 0.05, 0.002), np.arange(0.05, 1.0001, 0.01)], 3)  # finer where cuts are low


def load(dirs: list[Path]) -> list[dict]:
    return [json.loads(f.read_text()) for d in dirs for f in sorted(d.glob("*/candidates.json"))]


def fit_models(train) -> dict[str, dict]:
    scaler = StandardScaler().fit(train.features)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train.features), train.label)
    gbt = GradientBoostingClassifier(n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8,
                                     min_samples_leaf=5, random_state=0).fit(train.features, train.label)
    return {"logistic": export_logistic(scaler, lr), "gbt": export_gbt(gbt)}


def raw_of(model: dict, features: np.ndarray) -> np.ndarray:
    dummy = {"kind": "platt", "a": 1.0, "b": 0.0}
    modes = {m: {"cut": 0.5, "review_from": 0.5} for m in ("default", "sensitive")}
    return scorer_from_dict(scorer_json(model, dummy, modes, 0.5, {})).raw(features)


def large_lesions_lost(raw: np.ndarray, tune, cut: float, min_mm: float = LARGE_MM) -> int:
    """Tuning lesions >= ``min_mm`` that a candidate reaches but the Platt-calibrated score drops
    below ``cut``. Why: a linear model extrapolates past its training range; the first logistic
    scorer gave a 31 mm ring lesion (larger than any training candidate) 0.07. Trees do not
    extrapolate. A model that loses such a lesion is not chosen, whatever its log-loss."""
    prob = calibrate(fit_platt(raw, tune.label), raw)
    row = operating_curve(prob, tune, np.array([cut]), {"large": (min_mm, np.inf)})[0]
    reached = sum(1 for r in tune.records for les in r["lesions"] if les["diameter_mm"] >= min_mm and les["candidates"])
    return int(reached - row["large"][0])


def choose_calibration(raw: np.ndarray, tune) -> tuple[str, dict]:
    """Platt vs isotonic by 2-fold case-grouped cross-fitting on the tuning candidates (the lower
    log-loss wins; ECE is reported)."""
    half = tune.case % 2 == 0
    scores = {}
    for name, fit in (("platt", fit_platt), ("isotonic", fit_isotonic)):
        prob = np.zeros(len(raw))
        for part in (half, ~half):
            prob[~part] = calibrate(fit(raw[part], tune.label[part]), raw[~part])
        scores[name] = {"ece": reliability(prob, tune.label)[1],
                        "log_loss": float(log_loss(tune.label, np.clip(prob, 1e-6, 1 - 1e-6)))}
    # log-loss, a proper score, decides: isotonic won on ECE with 475 tuning candidates but maps
    # its top and bottom steps to exactly 1 and 0, a certainty no reader should be shown
    return min(scores, key=lambda k: scores[k]["log_loss"]), scores


def slice_mm(record: dict) -> float:
    """A case's slice spacing (mm): its grid's coarsest spacing (records without one: 1 mm phantoms)."""
    return round(max(record.get("spacing_mm", [1.0])), 2)


def by_slice(model: dict, calibration: dict, tune, modes: dict) -> dict:
    """Each mode's tuning figures per slice spacing (from the cases' grids): lesions found, FP per case."""
    out = {}
    for mm in sorted({slice_mm(r) for r in tune.records}):
        sub = pool([r for r in tune.records if slice_mm(r) == mm])
        prob = calibrate(calibration, raw_of(model, sub.features))
        out[f"{mm:g} mm"] = {"cases": len(sub.records), **{
            name: {k: row[k] for k in ("detected", "lesions", "fp_per_case")}
            for name, mode in modes.items() for row in operating_curve(prob, sub, np.array([mode["cut"]]))}}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, nargs="+", required=True)
    p.add_argument("--tune", type=Path, nargs="+", required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--report", type=Path)
    p.add_argument("--max-fp-default", type=float, default=0.5)
    p.add_argument("--max-fp-sensitive", type=float, default=2.0)
    p.add_argument("--floor-default", type=float, default=0.5,
                   help="the default cut is never below this lesion probability")
    p.add_argument("--floor-sensitive", type=float, default=0.1,
                   help="the sensitive cut is never below this; its review band never below a fifth of it")
    p.add_argument("--drop", nargs="*", default=[], help="features to leave out (ablation: their weight set to 0)")
    args = p.parse_args()
    train, tune = pool(load(args.train)), pool(load(args.tune))
    keep = np.array([f not in args.drop for f in FEATURES])
    train.features = np.where(keep, train.features, 0.0)  # a dropped feature is constant: it cannot split or weigh
    tune.features = np.where(keep, tune.features, 0.0)
    report = {"train": {"cases": len(train.records), "candidates": len(train.label),
                        "positive": int(train.label.sum())},
              "tune": {"cases": len(tune.records), "candidates": len(tune.label), "positive": int(tune.label.sum())},
              "dropped_features": args.drop, "models": {}}
    models = fit_models(train)
    for name, model in models.items():
        raw = raw_of(model, tune.features)
        prob = 1 / (1 + np.exp(-raw))
        report["models"][name] = {"tune_log_loss": float(log_loss(tune.label, np.clip(prob, 1e-6, 1 - 1e-6))),
                                  "tune_auc": float(roc_auc_score(tune.label, raw)),
                                  "large_lesions_lost": large_lesions_lost(raw, tune, args.floor_default)}
    # the network's own confidence alone, for reference: logit of the candidate's max probability
    report["models"]["max_probability_only"] = {"tune_auc": float(roc_auc_score(tune.label, tune.features[:, 2]))}
    safe = [k for k in models if not report["models"][k]["large_lesions_lost"]] or list(models)
    chosen = min(safe, key=lambda k: report["models"][k]["tune_log_loss"])
    raw = raw_of(models[chosen], tune.features)
    cal_name, cal_scores = choose_calibration(raw, tune)
    calibration = fit_isotonic(raw, tune.label) if cal_name == "isotonic" else fit_platt(raw, tune.label)
    prob = calibrate(calibration, raw)
    curve = operating_curve(prob, tune, CUTS)
    default = lowest_cut(curve, args.max_fp_default, args.floor_default)
    sensitive = lowest_cut(curve, args.max_fp_sensitive, args.floor_sensitive)
    floor = lowest_cut(curve, 2 * args.max_fp_sensitive, args.floor_sensitive / 5)
    # measurable candidates (>= LARGE_MM) are lesions from the sensitive cut on, in both modes (scorer.py says why)
    modes = {"default": {"cut": default, "review_from": min(sensitive, default), "large_cut": min(sensitive, default)},
             "sensitive": {"cut": sensitive, "review_from": min(floor, sensitive), "large_cut": sensitive}}
    report["tune_by_slice_mm"] = by_slice(models[chosen], calibration, tune, modes)  # cuts only (no large rule)
    report.update(chosen=chosen, calibration=cal_name, calibration_cross_fit=cal_scores, modes=modes,
                  tune_curve=[r for r in curve if r["cut"] in (default, sensitive, floor)])
    training = {"train": [str(d) for d in args.train], "tune": [str(d) for d in args.tune],
                "model": chosen, "calibration": cal_name, "rule": (
                    f"default: lowest cut >= {args.floor_default} with <= {args.max_fp_default} FP/case on the tuning "
                    f"set; sensitive: lowest cut >= {args.floor_sensitive} with <= {args.max_fp_sensitive}"),
                "candidates": report["train"] | {"tune": report["tune"]}}
    data = scorer_json(models[chosen], calibration, modes, float(train.records[0]["candidate_threshold"]), training)
    data["large_from_mm"] = LARGE_MM
    scorer_from_dict(data, str(args.output))  # refuse to write what the run time cannot read
    args.output.write_text(json.dumps(data) + "\n")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "tune_curve"}, indent=1))
    for row in report["tune_curve"]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
