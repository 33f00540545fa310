"""Evaluation of predictions against ground truth, the way the field's papers do it.

- :mod:`.pairing` finds each case's files; :mod:`.voxelwise` and :mod:`.lesionwise`
  measure one case (three lesion matching rules); :mod:`.case` puts them together;
  :mod:`.cohort` and :mod:`.stats` summarise and compare groups (Mann-Whitney U,
  clustered DeLong); :mod:`.threshold` picks operating points; :mod:`.runner` reads the
  files and writes the tables; :mod:`.report_data` gathers what the report shows of the
  worst cases (:mod:`.thumbnails`) and :mod:`.report` renders it as HTML (:mod:`.figures`).
"""

from .case import CaseResult, EvaluationConfig, evaluate_case
from .runner import CohortResult, evaluate_cohort, write_outputs

__all__ = ["CaseResult", "CohortResult", "EvaluationConfig", "evaluate_case", "evaluate_cohort",
           "write_outputs"]
