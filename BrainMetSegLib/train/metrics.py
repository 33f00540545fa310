"""Validation metrics: voxel Dice and lesion-wise detection with any-overlap matching.

Lesions are 26-connected components (:func:`BrainMetSegLib.lesions.label_instances`).
A ground-truth lesion is detected when any predicted voxel touches it; a predicted
component touching no ground-truth lesion is a false positive. Lesion size is the
longest diameter (mm) of the ground-truth component: the largest distance between two
voxel centres plus one voxel. Arrays are (Z, Y, X); spacing is (x, y, z) mm.
"""

from __future__ import annotations

import numpy as np

from ..lesions import label_instances

SIZE_BINS = (("<3mm", 0.0, 3.0), ("3-10mm", 3.0, 10.0), (">=10mm", 10.0, np.inf))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def longest_diameter_mm(mask: np.ndarray, spacing_xyz) -> float:
    """Largest distance between two voxel centres of ``mask`` plus one mean voxel size (mm)."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    pts = np.argwhere(mask)[:, ::-1] * np.asarray(spacing_xyz, float)
    if len(pts) > 64:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # flat lesion: all points in a plane
            pass
    far = float(pdist(pts).max()) if len(pts) > 1 else 0.0
    return far + float(np.mean(spacing_xyz))


def lesion_matches(pred: np.ndarray, gt_instances: np.ndarray, spacing_xyz,
                   diameters_mm: dict[int, float] | None = None) -> dict:
    """Lesion-wise comparison of a binary prediction with a ground-truth instance map.

    gt_instances: int map, 0 background, one id per lesion (e.g. from label_instances).
    diameters_mm: known diameters per GT id (else measured on the map).
    Returns ``{"lesions": [{"id", "diameter_mm", "detected", "dice"}], "fp": n, "n_pred": n}``.
    """
    pred_inst = label_instances(pred, spacing_xyz)
    lesions = []
    hit_pred: set[int] = set()
    for gid in np.unique(gt_instances):
        if gid == 0:
            continue
        g = gt_instances == gid
        touching = np.unique(pred_inst[g])
        touching = touching[touching > 0]
        hit_pred.update(int(t) for t in touching)
        region = np.isin(pred_inst, touching) if touching.size else np.zeros_like(g)
        diameter = (diameters_mm or {}).get(int(gid))
        if diameter is None:
            diameter = longest_diameter_mm(g, spacing_xyz)
        lesions.append({"id": int(gid), "diameter_mm": float(diameter), "detected": bool(touching.size),
                        "dice": dice(g, region) if touching.size else 0.0})
    n_pred = int(pred_inst.max())
    return {"lesions": lesions, "fp": n_pred - len(hit_pred), "n_pred": n_pred}


def case_metrics(prob: np.ndarray, label: np.ndarray, spacing_xyz, threshold: float = 0.5,
                 min_volume_mm3: float = 0.0) -> dict:
    """Voxel Dice and lesion matches of one case's probability map against a binary label."""
    pred = label_instances(prob > threshold, spacing_xyz, min_volume_mm3) > 0
    gt = label_instances(label > 0, spacing_xyz)
    result = lesion_matches(pred, gt, spacing_xyz)
    result["dice"] = dice(pred, label > 0)
    return result


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
    for name, lo, hi in SIZE_BINS:
        group = [les for les in lesions if lo <= les["diameter_mm"] < hi]
        out[f"sensitivity_{name}"] = (sum(les["detected"] for les in group) / len(group)) if group else float("nan")
        out[f"lesions_{name}"] = len(group)
    return out
