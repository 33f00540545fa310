"""Evaluate a cohort from files and write the tables, the summary and the report."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import BrainMetSegError, InputError
from ..progress import ProgressCallback, ProgressEvent, Stage, check_cancelled, no_progress
from ..staging import write_text
from . import cohort, threshold
from .case import CaseResult, EvaluationConfig, evaluate_case
from .loading import load_case
from .pairing import CaseFiles
from .report import render_report
from .report_data import report_data
from .result import CONVENTIONS, CohortResult
from .size_accuracy import size_accuracy


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
        name = " ".join(str(model[k]) for k in ("name", "version") if model.get(k)).strip()
        ran = model.get("weights_run")
        if isinstance(ran, dict) and ran.get("variant") == "thick-slice":  # its other network
            name += f" (thick-slice weights {ran.get('file', '')})"
        return name
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
        progress(ProgressEvent(Stage.EVALUATE, n / max(len(cases), 1), files.case_id))
        try:
            loaded = load_case(files)
            if config.threshold is not None and loaded.probability is None:  # else quietly unused
                raise InputError(f"{files.pred}: --threshold re-thresholds a probability map, and none was "
                                 "found for this prediction (probability.nii.gz beside a segment result's "
                                 "label map, <case>_probability.nii.gz in a flat folder, or the manifest's "
                                 "probability column).")
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
    progress(ProgressEvent(Stage.EVALUATE, 1.0, f"{len(results)} cases"))
    if not results:
        raise InputError("no case could be evaluated:\n  " + "\n  ".join(failed))

    out = CohortResult(config, results, {c.case_id: c for c in cases}, failed=failed, clinical=clinical)
    rows = out.rows
    out.summary = cohort.summarise_metrics(rows)
    out.strata = cohort.strata_by_lesion_count(rows)
    out.size_sensitivity = cohort.sensitivity_by_size(
        [{"size_bin": g.size_bin, "detected": g.detected, "excluded": g.excluded}
         for c in results for g in c.gt_lesions])
    out.size_accuracy = size_accuracy([g for c in results for g in c.gt_lesions])
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
    buf = io.StringIO()
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
        "pairing_problems": [str(p) for p in result.problems],
        "conventions": list(CONVENTIONS),
        "summary": result.summary,
        "pooled_auc": result.pooled_auc,
        "strata_by_lesion_count": result.strata,
        "sensitivity_by_size": result.size_sensitivity,
        "size_accuracy": result.size_accuracy,
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
        written[name] = write_text(text, outdir / name, overwrite=overwrite)
    if report:
        page = render_report(report_data(result), title)
        written["report.html"] = write_text(page, outdir / "report.html", overwrite=overwrite)
    return written
