"""Evaluate a cohort from files and write the tables, the summary and the report."""

from __future__ import annotations

import csv
import io as _io
import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import io
from ..errors import BrainMetSegError, InputError
from ..progress import ProgressCallback, ProgressEvent, check_cancelled, no_progress
from . import cohort, threshold
from .case import CaseResult, EvaluationConfig, evaluate_case
from .pairing import CaseFiles

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


def _read_run(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_model(data: dict) -> str:
    """'name version' of the model recorded in a run.json ('' when absent)."""
    model = data.get("model")
    if isinstance(model, dict):
        return " ".join(str(model[k]) for k in ("name", "version") if model.get(k)).strip()
    return str(model) if isinstance(model, str) else ""


def _run_seconds(data: dict) -> float:
    """Total processing time recorded in a run.json (NaN when absent or not found)."""
    for key in ("total_seconds", "total_s", "seconds", "elapsed_s", "wall_seconds"):
        if isinstance(data.get(key), (int, float)):
            return float(data[key])
    for key in ("timings_s", "timings", "timing", "times", "time_s", "stage_seconds", "stages"):
        value = data.get(key)
        if isinstance(value, dict):
            if isinstance(value.get("total"), (int, float)):
                return float(value["total"])
            nums = [v for v in value.values() if isinstance(v, (int, float))]
            if nums:
                return float(sum(nums))
    return math.nan


def read_mask(path: Path, role: str) -> sitk.Image:
    """Read a 3D label/mask image; an empty (constant) mask is valid here, unlike an image."""
    try:
        image = io.read_image(path, role)
    except InputError as exc:
        if "is constant" not in str(exc):
            raise
        image = sitk.ReadImage(str(path))
    return image[:, :, :, 0] if image.GetDimension() == 4 else image


def _check_geometry(ref: sitk.Image, ref_path: Path, other: sitk.Image, other_path: Path) -> None:
    if not io.same_geometry(ref, other):
        raise InputError(
            f"{other_path} and {ref_path} do not share geometry (size {other.GetSize()} vs {ref.GetSize()}, "
            f"spacing {tuple(round(s, 4) for s in other.GetSpacing())} vs "
            f"{tuple(round(s, 4) for s in ref.GetSpacing())}, or origin/direction); "
            "predictions must be in the ground truth's own geometry."
        )


@dataclass
class LoadedCase:
    gt: sitk.Image
    pred: sitk.Image
    probability: sitk.Image | None
    brain: sitk.Image | None


def load_case(files: CaseFiles) -> LoadedCase:
    """Read one case's images and check that they share the GT's geometry."""
    gt = read_mask(files.gt, "ground-truth")
    pred = read_mask(files.pred, "prediction")
    _check_geometry(gt, files.gt, pred, files.pred)
    prob = None
    if files.probability is not None:
        prob = sitk.Cast(read_mask(files.probability, "probability"), sitk.sitkFloat32)
        _check_geometry(gt, files.gt, prob, files.probability)
        arr = sitk.GetArrayViewFromImage(prob)
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise InputError(f"{files.probability}: values span [{arr.min():g}, {arr.max():g}]; "
                             "a probability map in [0, 1] is needed.")
    brain = None
    if files.brain_mask is not None:
        brain = read_mask(files.brain_mask, "brain mask")
        _check_geometry(gt, files.gt, brain, files.brain_mask)
    return LoadedCase(gt, pred, prob, brain)


@dataclass
class CohortResult:
    config: EvaluationConfig
    cases: list[CaseResult]
    files: dict[str, CaseFiles]
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    clinical: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: list[dict] = field(default_factory=list)
    strata: list[dict] = field(default_factory=list)
    size_sensitivity: list[dict] = field(default_factory=list)
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
                            "max_probability": "",
                            "centroid_k": round(g.centroid_kji[0], 1), "centroid_j": round(g.centroid_kji[1], 1),
                            "centroid_i": round(g.centroid_kji[2], 1)})
            for p in c.pred_lesions:
                out.append({"case_id": c.case_id, "kind": "pred", "lesion_id": p.pred_id, "voxels": p.voxels,
                            "volume_mm3": p.volume_mm3, "longest_diameter_mm": p.longest_diameter_mm,
                            "size_bin": "", "detected": "", "true_positive": p.true_positive,
                            "dice": "", "hd95_mm": "", "excluded": "",
                            "matched_ids": " ".join(map(str, p.matched_gt_ids)),
                            "max_probability": p.max_probability,
                            "centroid_k": round(p.centroid_kji[0], 1), "centroid_j": round(p.centroid_kji[1], 1),
                            "centroid_i": round(p.centroid_kji[2], 1)})
        return out


def evaluate_cohort(cases: list[CaseFiles], config: EvaluationConfig | None = None,
                    clinical: dict[str, dict[str, str]] | None = None,
                    subgroups: list[cohort.SubgroupSpec] | tuple = (),
                    select_threshold: str | None = None,
                    progress: ProgressCallback | None = None,
                    cancel: threading.Event | None = None) -> CohortResult:
    """Evaluate every case, then the cohort statistics.

    A case whose files cannot be read or do not share geometry is reported in
    ``failed`` (with the reason) and the others continue.
    """
    config = config or EvaluationConfig()
    progress = progress or no_progress
    clinical = clinical or {}
    results: list[CaseResult] = []
    failed: list[str] = []
    for n, files in enumerate(cases):
        check_cancelled(cancel)
        progress(ProgressEvent("evaluate", n / max(len(cases), 1), files.case_id))
        try:
            loaded = load_case(files)
            res = evaluate_case(loaded.gt, loaded.pred, loaded.probability, loaded.brain, config,
                                case_id=files.case_id)
        except BrainMetSegError as exc:
            failed.append(f"case {files.case_id}: {exc}")
            continue
        run = _read_run(files.run_json)
        res.metrics["seconds"] = _run_seconds(run)
        res.metrics["model"] = _run_model(run)
        for key, value in clinical.get(files.case_id, {}).items():
            res.metrics.setdefault(f"clinical_{key}", value)
        results.append(res)
    progress(ProgressEvent("evaluate", 1.0, f"{len(results)} cases"))
    if not results:
        raise InputError("no case could be evaluated:\n  " + "\n  ".join(failed))

    out = CohortResult(config, results, {c.case_id: c for c in cases}, failed=failed, clinical=clinical)
    rows = out.rows
    out.summary = cohort.summarise_metrics(rows)
    out.strata = cohort.strata_by_lesion_count(rows)
    out.size_sensitivity = cohort.sensitivity_by_size(
        [{"size_bin": g.size_bin, "detected": g.detected, "excluded": g.excluded}
         for c in results for g in c.gt_lesions])
    hists = {c.case_id: (c.pos_hist, c.neg_hist) for c in results if c.pos_hist is not None}
    out.froc = cohort.pooled_froc([c.froc for c in results])
    if hists:
        from .stats import clustered_auc
        est = clustered_auc(np.stack([h[0] for h in hists.values()]), np.stack([h[1] for h in hists.values()]))
        lo, hi = est.ci95()
        out.pooled_auc = {"auc": est.auc, "ci_low": lo, "ci_high": hi, "cases": len(hists),
                          "method": "pooled voxels inside brain masks; DeLong variance clustered by patient"}
        pos = sum(h[0] for h in hists.values())
        neg = sum(h[1] for h in hists.values())
        out.voxel_sweep = threshold.voxel_sweep(pos, neg)
        if select_threshold:
            out.threshold_selection = threshold.select_thresholds(out.voxel_sweep, out.froc, select_threshold)
    for spec in subgroups:
        out.subgroups.append(cohort.compare_subgroups(spec, rows, clinical, hists))
    return out


# ----------------------------------------------------------------------------- writing

def _csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue()


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


OUTPUT_NAMES = ("per_case.csv", "per_lesion.csv", "cohort_summary.csv", "cohort_summary.json",
                "froc.csv", "threshold_sweep.csv", "suggested_threshold.json", "report.html")


def planned_outputs(outdir: Path, with_threshold: bool) -> list[Path]:
    names = [n for n in OUTPUT_NAMES if with_threshold or n != "suggested_threshold.json"]
    return [Path(outdir) / n for n in names]


def summary_json(result: CohortResult) -> dict:
    return _json_safe({
        "config": asdict(result.config),
        "cases_evaluated": len(result.cases),
        "cases_failed": result.failed,
        "pairing_problems": result.problems,
        "conventions": list(CONVENTIONS),
        "summary": result.summary,
        "pooled_auc": result.pooled_auc,
        "strata_by_lesion_count": result.strata,
        "sensitivity_by_size": result.size_sensitivity,
        "froc": result.froc,
        "subgroups": result.subgroups,
        "threshold_selection": result.threshold_selection,
    })


def write_outputs(result: CohortResult, outdir, overwrite: bool = False, report: bool = True,
                  title: str = "BrainMetSeg evaluation") -> dict[str, Path]:
    """Write the CSV/JSON tables (and report.html) atomically into ``outdir``."""
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    texts = {
        "per_case.csv": _csv_text(result.rows),
        "per_lesion.csv": _csv_text(result.lesion_rows()) or "case_id,kind,lesion_id\n",
        "cohort_summary.csv": _csv_text(result.summary),
        "cohort_summary.json": json.dumps(summary_json(result), indent=2),
    }
    if result.froc:
        texts["froc.csv"] = _csv_text(result.froc)
    if result.voxel_sweep:
        texts["threshold_sweep.csv"] = _csv_text(result.voxel_sweep)
    if result.threshold_selection:
        texts["suggested_threshold.json"] = json.dumps(_json_safe(result.threshold_selection), indent=2)
    for name, text in texts.items():
        written[name] = io.write_text(text, outdir / name, overwrite=overwrite)
    if report:
        from .report import render_report
        written["report.html"] = io.write_text(render_report(result, title), outdir / "report.html", overwrite=overwrite)
    return written
