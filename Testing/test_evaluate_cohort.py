"""Cohort statistics: subgroup assignment, tests, strata, FROC pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from BrainMetSegLib.errors import InputError
from BrainMetSegLib.evaluate import cohort


def rows_and_clinical():
    rng = np.random.default_rng(0)
    rows, clinical = [], {}
    for i in range(20):
        cid = f"c{i}"
        rows.append({"case_id": cid, "dice": 0.5 + 0.02 * i + rng.normal(0, 0.01),
                     "gt_lesions": [0, 2, 5, 12][i % 4], "fp_lesions": i % 3,
                     "lesion_sensitivity": math.nan if i % 4 == 0 else 0.8})
        clinical[cid] = {"age": str(40 + 2 * i), "sex": "F" if i % 2 else "M",
                         "primary": ["lung", "breast", "melanoma"][i % 3] if i != 7 else ""}
    return rows, clinical


def test_numeric_cut_and_categorical_value_vs_rest():
    rows, clinical = rows_and_clinical()
    ids = [r["case_id"] for r in rows]
    groups, labels = cohort.assign_groups(cohort.SubgroupSpec.parse("age:60"), clinical, ids)
    assert labels == ["age < 60", "age >= 60"]
    assert sum(g == "age < 60" for g in groups.values()) == 10  # ages 40..58
    groups, labels = cohort.assign_groups(cohort.SubgroupSpec.parse("primary:lung"), clinical, ids)
    assert labels == ["primary = lung", "primary != lung"] and "c7" not in groups  # missing value
    with pytest.raises(InputError, match="give a cut"):
        cohort.assign_groups(cohort.SubgroupSpec.parse("age"), clinical, ids)
    with pytest.raises(InputError, match="no column"):
        cohort.assign_groups(cohort.SubgroupSpec.parse("weight"), clinical, ids)


def test_two_group_comparison_matches_scipy():
    rows, clinical = rows_and_clinical()
    res = cohort.compare_subgroups(cohort.SubgroupSpec.parse("age:60"), rows, clinical, metrics=("dice",))
    entry = res["metrics"][0]
    young = [r["dice"] for r in rows[:10]]
    old = [r["dice"] for r in rows[10:]]
    assert entry["p"] == pytest.approx(sps.mannwhitneyu(young, old, alternative="two-sided").pvalue)
    assert entry["p"] < 0.001
    assert entry["ci_low"] <= entry["median_difference"] <= entry["ci_high"] < 0
    assert entry["age < 60"]["median"] == pytest.approx(np.median(young))


def test_three_levels_use_kruskal_and_unassigned_cases_are_listed():
    rows, clinical = rows_and_clinical()
    res = cohort.compare_subgroups(cohort.SubgroupSpec.parse("primary"), rows, clinical, metrics=("dice",))
    assert res["groups"] == ["primary = breast", "primary = lung", "primary = melanoma"]
    assert res["unassigned"] == ["c7"]
    assert res["metrics"][0]["test"] == "Kruskal-Wallis"


def test_strata_and_summary_skip_nan():
    rows, _ = rows_and_clinical()
    strata = {s["stratum"]: s for s in cohort.strata_by_lesion_count(rows)}
    assert [strata[k]["cases"] for k in ("no lesion", "1-3", "4-10", ">10")] == [5, 5, 5, 5]
    assert math.isnan(strata["no lesion"]["lesion_sensitivity_median"])
    summ = {s["metric"]: s for s in cohort.summarise_metrics(rows, ("lesion_sensitivity", "fp_lesions"))}
    assert summ["lesion_sensitivity"]["n"] == 15  # NaNs (no GT lesion) excluded
    assert summ["fp_lesions"]["mean"] == pytest.approx(np.mean([i % 3 for i in range(20)]))


def test_pooled_froc():
    a = [{"threshold": 0.5, "gt_lesions": 4, "detected": 3, "fp": 2}]
    b = [{"threshold": 0.5, "gt_lesions": 0, "detected": 0, "fp": 1}]
    row = cohort.pooled_froc([a, b])[0]
    assert row["sensitivity"] == 0.75 and row["fp_per_case"] == 1.5
    assert row["lesion_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 3))
