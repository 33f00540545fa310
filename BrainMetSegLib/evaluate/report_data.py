"""What the evaluation report shows beyond the cohort result: the worst cases with their slices
(read from the files again), each subgroup's cases and the lesion-volume agreement. Built once
after the evaluation, so the report renders what it is given and reads nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import cohort
from .case import CaseResult
from .result import CohortResult
from .size_accuracy import VolumeAgreement, volume_agreement
from .thumbnails import CaseSlice, case_slice

WORST_CASES = 6


@dataclass
class ReportData:
    result: CohortResult
    worst: list[tuple[CaseResult, CaseSlice | None]]  # worst first; no slice where the files failed
    subgroup_members: list[dict[str, str]]  # per entry of result.subgroups: case id -> group
    volume_agreement: VolumeAgreement | None  # detected GT lesions (None: none detected)


def worst_cases(cases: list[CaseResult], n: int = WORST_CASES) -> list[CaseResult]:
    """The ``n`` cases with the lowest lesion-wise Dice (undefined last), more FPs first."""
    def key(c):
        v = c.metrics.get("lesionwise_dice", math.nan)
        return (v if np.isfinite(v) else 2.0, -c.metrics.get("fp_lesions", 0))

    return sorted(cases, key=key)[:n]


def report_data(result: CohortResult, n_worst: int = WORST_CASES) -> ReportData:
    """Everything :func:`~.report.render_report` needs besides ``result``."""
    worst = [(c, case_slice(c, result.files[c.case_id], result.config))
             for c in worst_cases(result.cases, n_worst)]
    case_ids = [r["case_id"] for r in result.rows]
    members = [cohort.assign_groups(cohort.SubgroupSpec(sg["column"], sg["cut"]), result.clinical, case_ids)[0]
               for sg in result.subgroups]
    agreement = volume_agreement([g for c in result.cases for g in c.gt_lesions])
    return ReportData(result, worst, members, agreement)
