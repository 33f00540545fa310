"""A cohort's evaluation result and the conventions it follows (read by the tables and the report)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .case import CaseResult, EvaluationConfig
from .pairing import CaseFiles, PairingProblem

CONVENTIONS = (
    "Voxel-wise metrics count voxels inside the brain mask (the whole volume when no mask is given); "
    "GT voxels outside the mask are reported per case (gt_voxels_outside_region).",
    "Lesion-wise metrics use the whole volume; lesions are 26-connected components of the binarised "
    "masks (instance ids in the files are ignored).",
    "No GT and no prediction: voxel Dice = IoU = F1 = 1, BraTS lesion-wise Dice = 1 (as published); "
    "precision, recall, MCC, AUC, lesion sensitivity, PPV and F1 undefined (NaN, excluded from medians); FP = 0.",
    "No GT, some prediction: voxel Dice = 0, precision = 0, lesion PPV = 0, lesion F1 = 0, lesion-wise "
    "Dice = 0; recall, MCC, AUC and lesion sensitivity NaN.",
    "GT but no prediction: voxel Dice = recall = 0, lesion sensitivity = 0, lesion F1 = 0, lesion-wise "
    "Dice = 0; precision, MCC and lesion PPV NaN.",
    "MCC is NaN when a confusion-matrix row or column is empty (scikit-learn returns 0).",
    "Lesion size = longest 3D diameter (mm, physical space, from the marching-cubes surface).",
    "Per-lesion Dice/HD95 compare a GT lesion with the union of the predicted lesions matched to it; "
    "BraTS lesion-wise HD95 scores each miss and FP as 374 mm.",
)


@dataclass
class CohortResult:
    config: EvaluationConfig
    cases: list[CaseResult]
    files: dict[str, CaseFiles]
    problems: list[PairingProblem] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    clinical: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: list[dict] = field(default_factory=list)
    strata: list[dict] = field(default_factory=list)
    size_sensitivity: list[dict] = field(default_factory=list)
    size_accuracy: list[dict] = field(default_factory=list)
    froc: list[dict] = field(default_factory=list)
    subgroups: list[dict] = field(default_factory=list)
    voxel_sweep: list[dict] = field(default_factory=list)
    threshold_selection: dict | None = None
    pooled_auc: dict | None = None

    @property
    def rows(self) -> list[dict]:
        return [c.metrics for c in self.cases]

    def lesion_rows(self) -> list[dict]:
        out = []
        for c in self.cases:
            for g in c.gt_lesions:
                out.append({"case_id": c.case_id, "kind": "gt", "lesion_id": g.gt_id, "voxels": g.voxels,
                            "volume_mm3": g.volume_mm3, "longest_diameter_mm": g.longest_diameter_mm,
                            "size_bin": g.size_bin, "detected": g.detected, "true_positive": "",
                            "dice": g.dice, "hd95_mm": g.hd95_mm, "excluded": g.excluded,
                            "matched_ids": " ".join(map(str, g.matched_pred_ids)),
                            "max_probability": "", "pred_volume_mm3": g.pred_volume_mm3,
                            "pred_longest_diameter_mm": g.pred_longest_diameter_mm,
                            "centroid_k": round(g.centroid_kji[0], 1), "centroid_j": round(g.centroid_kji[1], 1),
                            "centroid_i": round(g.centroid_kji[2], 1)})
            for p in c.pred_lesions:
                out.append({"case_id": c.case_id, "kind": "pred", "lesion_id": p.pred_id, "voxels": p.voxels,
                            "volume_mm3": p.volume_mm3, "longest_diameter_mm": p.longest_diameter_mm,
                            "size_bin": "", "detected": "", "true_positive": p.true_positive,
                            "dice": "", "hd95_mm": "", "excluded": "",
                            "matched_ids": " ".join(map(str, p.matched_gt_ids)),
                            "max_probability": p.max_probability, "pred_volume_mm3": "",
                            "pred_longest_diameter_mm": "",
                            "centroid_k": round(p.centroid_kji[0], 1), "centroid_j": round(p.centroid_kji[1], 1),
                            "centroid_i": round(p.centroid_kji[2], 1)})
        return out
