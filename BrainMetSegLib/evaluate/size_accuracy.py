"""How true the drawn size of each detected lesion is: volume ratio and diameter error.

A reader trusts the lesion table's volume and longest diameter; here each detected
ground-truth lesion is compared with what the prediction drew for it (the matched predicted
lesions: summed volume, largest longest diameter), pooled over a cohort, per size bin of the
ground-truth lesion (longest diameter, :data:`~.lesionwise.SIZE_BIN_NAMES`) and over all:

- ``volume_ratio``: predicted / true volume (1 = right size; 0.5 = drawn at half its volume);
- ``diameter_error_mm``: predicted - true longest diameter (mm), and its absolute value.

Medians with interquartile ranges (lesion sizes are skewed; a few merged lesions must not
move the summary). :func:`volume_agreement` gives the Bland-Altman data (volume differences
against mean volume) that the report plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lesionwise import SIZE_BIN_NAMES, GTLesion

ALL = "all"


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return math.nan, math.nan, math.nan
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q2), float(q1), float(q3)


def _detected(lesions: list[GTLesion]) -> list[GTLesion]:
    return [g for g in lesions if g.detected and not g.excluded and math.isfinite(g.pred_volume_mm3)]


def size_accuracy(lesions: list[GTLesion]) -> list[dict]:
    """Rows per size bin and ``all``: detected lesions, median and IQR of the volume ratio, of
    the signed and of the absolute longest-diameter error (mm)."""
    detected = _detected(lesions)
    out = []
    for name in (*SIZE_BIN_NAMES, ALL):
        sub = [g for g in detected if name in (ALL, g.size_bin)]
        ratio = _quartiles([g.pred_volume_mm3 / g.volume_mm3 for g in sub])
        error = _quartiles([g.pred_longest_diameter_mm - g.longest_diameter_mm for g in sub])
        absolute = _quartiles([abs(g.pred_longest_diameter_mm - g.longest_diameter_mm) for g in sub])
        out.append({"size_bin": name, "detected_lesions": len(sub),
                    "volume_ratio_median": ratio[0], "volume_ratio_q1": ratio[1], "volume_ratio_q3": ratio[2],
                    "diameter_error_mm_median": error[0], "diameter_error_mm_q1": error[1],
                    "diameter_error_mm_q3": error[2], "abs_diameter_error_mm_median": absolute[0],
                    "abs_diameter_error_mm_q1": absolute[1], "abs_diameter_error_mm_q3": absolute[2]})
    return out


@dataclass
class VolumeAgreement:
    """Bland-Altman data of lesion volume over the detected GT lesions (one entry each)."""

    mean_mm3: np.ndarray  # mean of predicted and true volume
    difference_mm3: np.ndarray  # predicted - true volume
    size_bins: list[str]  # the GT lesion's size bin
    bias_mm3: float  # mean difference
    sd_mm3: float  # SD of the differences (0 with one lesion); 95 % limits: bias +- 1.96 SD


def volume_agreement(lesions: list[GTLesion]) -> VolumeAgreement | None:
    """Predicted against true volume of each detected lesion (``None`` when none was detected)."""
    detected = _detected(lesions)
    if not detected:
        return None
    pred = np.array([g.pred_volume_mm3 for g in detected])
    true = np.array([g.volume_mm3 for g in detected])
    mean, diff = (pred + true) / 2, pred - true
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return VolumeAgreement(mean, diff, [g.size_bin for g in detected], bias, sd)
