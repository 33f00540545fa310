"""Cohort statistics over per-case results: summaries, strata, size sensitivity, FROC, subgroups.

Per-patient values are summarised as median (IQR) and mean +- SD over the cases
where the metric is defined (NaNs excluded, the count n is reported).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

from ..errors import InputError
from . import stats
from .lesionwise import SIZE_BIN_NAMES

VOXEL_METRICS = ("auc", "dice", "iou", "f1", "mcc", "precision", "recall", "specificity")
LESION_METRICS = ("lesion_sensitivity", "lesion_ppv", "lesion_f1", "fp_lesions", "fp_lesions_ge10mm",
                  "lesionwise_dice", "lesionwise_hd95_mm", "median_lesion_dice")
SUMMARY_METRICS = VOXEL_METRICS + LESION_METRICS + ("seconds",)

LABELS = {
    "auc": "AUC (voxel)", "dice": "Dice (voxel)", "iou": "IoU (voxel)", "f1": "F1 (voxel)",
    "mcc": "MCC (voxel)", "precision": "Precision (voxel)", "recall": "Recall (voxel)",
    "specificity": "Specificity (voxel)", "lesion_sensitivity": "Lesion sensitivity",
    "lesion_ppv": "Lesion PPV", "lesion_f1": "Lesion F1", "fp_lesions": "False positives / case",
    "fp_lesions_ge10mm": "FPs >= 10 mm / case", "lesionwise_dice": "Lesion-wise Dice (BraTS)",
    "lesionwise_hd95_mm": "Lesion-wise HD95 (BraTS, mm)", "median_lesion_dice": "Median Dice of detected lesions",
    "seconds": "Time per case (s, run.json)",
}

STRATA = (("no lesion", 0, 0), ("1-3", 1, 3), ("4-10", 4, 10), (">10", 11, math.inf))
STRATA_METRICS = ("lesion_sensitivity", "lesion_ppv", "lesion_f1", "fp_lesions", "fp_lesions_ge10mm",
                  "dice", "lesionwise_dice")


def summarise_metrics(rows: list[dict], metrics=SUMMARY_METRICS) -> list[dict]:
    """One row per metric: n, median, q1, q3, mean, sd over cases (NaN-safe)."""
    out = []
    for m in metrics:
        values = [r.get(m, math.nan) for r in rows]
        values = [v if isinstance(v, (int, float)) and v is not None else math.nan for v in values]
        d = stats.describe(values)
        if d["n"] == 0 and m == "seconds":
            continue
        out.append({"metric": m, "label": LABELS.get(m, m), **d})
    return out


def strata_by_lesion_count(rows: list[dict]) -> list[dict]:
    """Key metrics per stratum of GT lesion count (0, 1-3, 4-10, > 10)."""
    out = []
    for name, lo, hi in STRATA:
        sub = [r for r in rows if lo <= r.get("gt_lesions", 0) <= hi]
        entry = {"stratum": name, "cases": len(sub)}
        for m in STRATA_METRICS:
            d = stats.describe([r.get(m, math.nan) for r in sub])
            entry[f"{m}_median"] = d["median"]
            entry[f"{m}_mean"] = d["mean"]
        out.append(entry)
    return out


def sensitivity_by_size(gt_lesions: list[dict]) -> list[dict]:
    """Pooled lesion sensitivity per size bin with Wilson 95 % CIs (excluded lesions left out)."""
    out = []
    for name in SIZE_BIN_NAMES:
        sub = [g for g in gt_lesions if g["size_bin"] == name and not g.get("excluded")]
        det = sum(bool(g["detected"]) for g in sub)
        lo, hi = stats.wilson_ci(det, len(sub))
        out.append({"size_bin": name, "lesions": len(sub), "detected": det,
                    "sensitivity": det / len(sub) if sub else math.nan, "ci_low": lo, "ci_high": hi})
    return out


def pooled_froc(froc_per_case: list[list[dict]]) -> list[dict]:
    """Cohort FROC: per threshold, pooled lesion sensitivity and mean FPs per case.

    ``f1`` here is the count-based 2D / (2D + FN + FP) with D = detected GT lesions
    (used to pick the lesion-wise operating threshold).
    """
    cases = [c for c in froc_per_case if c]
    if not cases:
        return []
    out = []
    for i, t in enumerate(c["threshold"] for c in cases[0]):
        n_gt = sum(c[i]["gt_lesions"] for c in cases)
        det = sum(c[i]["detected"] for c in cases)
        fp = sum(c[i]["fp"] for c in cases)
        f1 = 2 * det / (2 * det + (n_gt - det) + fp) if (n_gt + fp) > 0 else math.nan
        out.append({"threshold": t, "gt_lesions": n_gt, "detected": det,
                    "sensitivity": det / n_gt if n_gt else math.nan,
                    "fp_per_case": fp / len(cases), "lesion_f1": f1, "cases": len(cases)})
    return out


# ----------------------------------------------------------------------------- subgroups

@dataclass(frozen=True)
class SubgroupSpec:
    """A clinical column and an optional cut: ``age:60`` (numeric, < 60 vs >= 60) or
    ``primary:lung`` (categorical, lung vs the rest); a bare column compares its levels."""

    column: str
    cut: str | None = None

    @classmethod
    def parse(cls, text: str) -> SubgroupSpec:
        col, sep, cut = text.partition(":")
        if not col.strip():
            raise InputError(f"--subgroup {text!r}: give a clinical column name, e.g. sex or age:60.")
        return cls(col.strip(), cut.strip() if sep else None)


def read_clinical(path) -> dict[str, dict[str, str]]:
    """case id -> {column: value} from a CSV whose id column is ``case_id`` (else the first column)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: clinical CSV not found.")
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InputError(f"{p}: clinical CSV has no header row.")
        key = "case_id" if "case_id" in reader.fieldnames else reader.fieldnames[0]
        table = {}
        for row in reader:
            cid = (row.get(key) or "").strip()
            if cid:
                table[cid] = {k: (v or "").strip() for k, v in row.items() if k != key}
    return table


def _as_float(v: str) -> float | None:
    """``v`` as a finite number, else None (not a number, NaN or infinite)."""
    try:
        value = float(v)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def assign_groups(spec: SubgroupSpec, clinical: dict[str, dict[str, str]],
                  case_ids) -> tuple[dict[str, str], list[str]]:
    """case id -> group label for cases with a value; also the ordered group labels."""
    values = {c: clinical.get(c, {}).get(spec.column, "") for c in case_ids}
    known = {c: v for c, v in values.items() if v not in ("", "NA", "NaN", "nan")}
    if not any(spec.column in row for row in clinical.values()):
        cols = sorted({k for row in clinical.values() for k in row})
        raise InputError(f"clinical CSV has no column {spec.column!r}; columns: {', '.join(cols)}.")
    numeric = known and all(_as_float(v) is not None for v in known.values())
    if spec.cut is not None and numeric:
        cut = _as_float(spec.cut)
        if cut is None:
            raise InputError(f"--subgroup {spec.column}:{spec.cut}: the cut must be a number for a numeric column.")
        lo, hi = f"{spec.column} < {spec.cut}", f"{spec.column} >= {spec.cut}"
        return {c: (lo if _as_float(v) < cut else hi) for c, v in known.items()}, [lo, hi]
    if spec.cut is not None:
        yes, no = f"{spec.column} = {spec.cut}", f"{spec.column} != {spec.cut}"
        return {c: (yes if v.lower() == spec.cut.lower() else no) for c, v in known.items()}, [yes, no]
    levels = sorted(set(known.values()))
    if numeric and len(levels) > 2:
        raise InputError(f"--subgroup {spec.column}: numeric column with {len(levels)} values; "
                         f"give a cut, e.g. {spec.column}:60.")
    return {c: f"{spec.column} = {v}" for c, v in known.items()}, [f"{spec.column} = {v}" for v in levels]


def compare_subgroups(spec: SubgroupSpec, rows: list[dict], clinical: dict[str, dict[str, str]],
                      histograms: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                      metrics=VOXEL_METRICS + LESION_METRICS) -> dict:
    """Per-metric group summaries and tests.

    Two groups: Mann-Whitney U (two-sided) per metric with the bootstrap 95 % CI of the
    difference in medians; voxel AUC of each group pooled over its patients with the
    clustered DeLong test (patients as clusters). More groups: Kruskal-Wallis per metric.
    """
    groups, labels = assign_groups(spec, clinical, [r["case_id"] for r in rows])
    by_group = {g: [r for r in rows if groups.get(r["case_id"]) == g] for g in labels}
    result = {"column": spec.column, "cut": spec.cut, "groups": labels,
              "cases": {g: len(v) for g, v in by_group.items()},
              "unassigned": sorted(r["case_id"] for r in rows if r["case_id"] not in groups),
              "metrics": []}
    for m in metrics:
        entry = {"metric": m, "label": LABELS.get(m, m)}
        samples = {g: [r.get(m, math.nan) for r in by_group[g]] for g in labels}
        for g in labels:
            entry[g] = stats.describe(samples[g])
        if len(labels) == 2:
            a, b = samples[labels[0]], samples[labels[1]]
            u, p = stats.mann_whitney(a, b)
            diff, lo, hi = stats.bootstrap_median_difference_ci(a, b)
            entry.update({"test": "Mann-Whitney U", "U": u, "p": p, "median_difference": diff,
                          "ci_low": lo, "ci_high": hi})
        elif len(labels) > 2:
            clean = [np.asarray(s, float)[np.isfinite(s)] for s in samples.values()]
            clean = [c for c in clean if len(c)]
            if len(clean) >= 2 and np.ptp(np.concatenate(clean)) > 0:
                h, p = sps.kruskal(*clean)
                entry.update({"test": "Kruskal-Wallis", "H": float(h), "p": float(p)})
        result["metrics"].append(entry)
    if histograms and len(labels) == 2:
        est = []
        for g in labels:
            hs = [histograms[r["case_id"]] for r in by_group[g] if r["case_id"] in histograms]
            if not hs:
                est = []
                break
            est.append(stats.clustered_auc(np.stack([h[0] for h in hs]), np.stack([h[1] for h in hs])))
        if est:
            result["delong_auc"] = {"test": "DeLong (clustered by patient, Obuchowski 1997)",
                                    "groups": labels, **stats.compare_independent_aucs(*est),
                                    "ci_a": est[0].ci95(), "ci_b": est[1].ci95()}
    return result
