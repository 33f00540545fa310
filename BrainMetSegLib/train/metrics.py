"""Validation metrics of a training run: voxel Dice and lesion-wise detection.

The lesions, their matching and their size are those of ``brainmetseg evaluate``
(:func:`BrainMetSegLib.evaluate.lesionwise.match_lesions` with the ``overlap`` rule):
26-connected components; a ground-truth lesion is detected when any predicted lesion
touches it; a predicted lesion touching none is a false positive; lesion size is the
longest surface diameter (:func:`BrainMetSegLib.lesions.component_diameters_mm`).
Arrays are (Z, Y, X); spacing is (x, y, z) mm.
"""

from __future__ import annotations

import numpy as np

from ..evaluate.lesionwise import SIZE_BIN_NAMES, match_lesions
from ..evaluate.voxelwise import confusion, metrics_from_counts
from ..operating_point import OperatingPoint, lesion_labels_array


def case_result(gt: np.ndarray, pred: np.ndarray, spacing_xyz, direction=None) -> dict:
    """Voxel Dice and lesion matches of a binary prediction against a ground-truth mask.

    Returns ``{"dice", "fp", "n_pred", "lesions": [{"size_bin", "longest_diameter_mm",
    "detected", "dice"}]}``, the per-case input of :func:`summarise`.
    """
    gt, pred = np.asarray(gt) > 0, np.asarray(pred) > 0
    match = match_lesions(gt, pred, spacing_xyz, "overlap", direction)
    return {"dice": metrics_from_counts(*confusion(gt, pred))["dice"],
            "fp": sum(not p.true_positive for p in match.pred), "n_pred": len(match.pred),
            "lesions": [{"size_bin": g.size_bin, "longest_diameter_mm": g.longest_diameter_mm,
                         "detected": g.detected, "dice": g.dice} for g in match.gt]}


def case_metrics(prob: np.ndarray, label: np.ndarray, spacing_xyz, point: OperatingPoint) -> dict:
    """:func:`case_result` of the lesions of ``prob`` at ``point`` (as ``brainmetseg segment``
    makes its prediction) against a binary label."""
    pred = lesion_labels_array(prob, spacing_xyz, point) > 0
    return case_result(label, pred, spacing_xyz)


def summarise(cases: list[dict]) -> dict:
    """Pool case results: mean/median Dice, lesion sensitivity (all and per size bin), FP per case,
    median lesion Dice (detected lesions) and lesion-wise F1."""
    lesions = [les for c in cases for les in c["lesions"]]
    n_gt = len(lesions)
    tp = sum(les["detected"] for les in lesions)
    fp = sum(c["fp"] for c in cases)
    out = {
        "cases": len(cases),
        "dice_mean": float(np.mean([c["dice"] for c in cases])) if cases else float("nan"),
        "dice_median": float(np.median([c["dice"] for c in cases])) if cases else float("nan"),
        "lesions": n_gt,
        "sensitivity": tp / n_gt if n_gt else float("nan"),
        "fp_per_case": fp / len(cases) if cases else float("nan"),
        "lesion_f1": 2 * tp / (2 * tp + fp + (n_gt - tp)) if (n_gt + fp) else 1.0,
        "median_lesion_dice": float(np.median([les["dice"] for les in lesions if les["detected"]]))
        if tp else 0.0,
    }
    for name in SIZE_BIN_NAMES:
        group = [les for les in lesions if les["size_bin"] == name]
        out[f"sensitivity_{name}"] = (sum(les["detected"] for les in group) / len(group)) if group else float("nan")
        out[f"lesions_{name}"] = len(group)
    return out
