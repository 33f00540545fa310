"""Self-contained HTML report: summary table, plots (base64 PNG), worst cases with thumbnails.

Renders a :class:`~.report_data.ReportData` (the cohort result plus what the report shows of
the worst cases and subgroups); the figures come from :mod:`.figures`. Nothing is read or
computed from the files here, and nothing is fetched at view time (inline CSS, images
embedded), so the file can be mailed or archived as is.
"""

from __future__ import annotations

import datetime as _dt
import html
import math

import numpy as np

from .. import __version__
from ..html_report import CSS, figure, table
from . import cohort, figures
from .figures import GT_COLOUR, PRED_COLOUR
from .report_data import ReportData
from .result import CONVENTIONS, CohortResult

BOX_METRICS = ("dice", "lesion_sensitivity", "lesion_ppv", "lesion_f1", "lesionwise_dice",
               "fp_lesions", "auc", "precision", "recall", "mcc")
SUBGROUP_BOX_METRICS = ("dice", "lesion_sensitivity", "lesion_f1", "fp_lesions", "auc")


def fmt_number(v, digits=3) -> str:
    """A table cell: ``digits`` decimals, integers as they are, "–" for missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def fmt_p_value(v) -> str:
    """A p-value cell: "<0.001" below 0.001, bold (class sig) below 0.05."""
    if v is None or not math.isfinite(v):
        return "–"
    text = "<0.001" if v < 0.001 else f"{v:.3f}"
    return f'<span class="sig">{text}</span>' if v < 0.05 else text


def _med_iqr(d: dict) -> str:
    return f"{fmt_number(d['median'])} ({fmt_number(d['q1'])} to {fmt_number(d['q3'])})" if d["n"] else "–"


def _mean_sd(d: dict) -> str:
    return f"{fmt_number(d['mean'])} ± {fmt_number(d['sd'])}" if d["n"] else "–"


def _summary_section(result: CohortResult) -> str:
    rows = result.rows
    by = {s["metric"]: s for s in result.summary}
    n_gt = sum(r["gt_lesions"] for r in rows)
    n_det = sum(r["detected_lesions"] for r in rows)
    n_fp = sum(r["fp_lesions"] for r in rows)
    kpis = [
        (f"{len(rows)}", "cases evaluated" + (f" ({len(result.failed)} failed)" if result.failed else "")),
        (f"{n_det}/{n_gt}", f"GT lesions detected ({fmt_number(n_det / n_gt if n_gt else math.nan, 2)})"),
        (f"{n_fp / len(rows):.2f}", "false positives per case (mean)"),
        (fmt_number(by["dice"]["median"]), "median voxel Dice"),
        (fmt_number(by["lesionwise_dice"]["median"]), "median lesion-wise Dice (BraTS)"),
    ]
    if result.pooled_auc:
        kpis.append((fmt_number(result.pooled_auc["auc"]), "pooled voxel AUC"))
    k = "".join(f'<div class="kpi"><b>{a}</b><span>{html.escape(b)}</span></div>' for a, b in kpis)
    summary = table(["metric", "n", "median (IQR)", "mean ± SD"],
                    [[html.escape(s["label"]), str(s["n"]), _med_iqr(s), _mean_sd(s)] for s in result.summary])
    extra = ""
    if result.pooled_auc:
        a = result.pooled_auc
        extra = (f'<p class="note">Pooled voxel AUC {a["auc"]:.3f} (95 % CI {a["ci_low"]:.3f} to {a["ci_high"]:.3f}, '
                 f'{html.escape(a["method"])}).</p>')
    return (f'<section><h2>Summary (per patient, then over patients)</h2><div class="kpis">{k}</div>'
            f"{summary}{extra}</section>")


def _strata_section(result: CohortResult) -> str:
    rows = [[s["stratum"], str(s["cases"]), fmt_number(s["lesion_sensitivity_median"]),
             fmt_number(s["lesion_f1_median"]), fmt_number(s["fp_lesions_mean"], 2),
             fmt_number(s["fp_lesions_ge10mm_mean"], 2), fmt_number(s["dice_median"]),
             fmt_number(s["lesionwise_dice_median"])] for s in result.strata]
    return ("<section><h2>Strata by number of GT lesions</h2>"
            + table(["GT lesions", "cases", "median lesion sensitivity", "median lesion F1", "mean FP / case",
                     "mean FP ≥ 10 mm / case", "median voxel Dice", "median lesion-wise Dice"], rows)
            + "</section>")


def _plots_section(data: ReportData) -> str:
    result = data.result
    rows = result.rows
    panels = []
    for m in BOX_METRICS:
        vals = [r.get(m, math.nan) for r in rows]
        if any(np.isfinite(v) for v in vals):
            panels.append((cohort.LABELS[m], {"all cases": vals}, figures.metric_ylim(m)))
    figs = [figure(figures.box_plots(panels))] if panels else []
    size_rows = result.size_sensitivity
    size_table = table(["size", "GT lesions", "detected", "sensitivity (95 % CI)"],
                       [[r["size_bin"], str(r["lesions"]), str(r["detected"]),
                         f"{fmt_number(r['sensitivity'])} ({fmt_number(r['ci_low'])} to {fmt_number(r['ci_high'])})"]
                        for r in size_rows])
    parts = [f'<section><h2>Per-patient distributions</h2><div class="grid">{"".join(figs)}</div></section>',
             '<section><h2>Detection by lesion size and threshold</h2><div class="grid">',
             figure(figures.size_plot(size_rows))]
    if result.froc:
        parts.append(figure(figures.froc_plot(result.froc, result.config.threshold or 0.5),
                            f"Pooled over {result.froc[0]['cases']} cases with probability maps, "
                            f"matching rule '{result.config.match}'."))
    parts.append(f"</div>{size_table}</section>")
    return "".join(parts) + _size_accuracy_section(data)


def _quartiles(r: dict, name: str) -> str:
    """'median (q1 to q3)' of the columns ``name``_median, _q1 and _q3 of a size-accuracy row."""
    return (f"{fmt_number(r[name + '_median'], 2)} ({fmt_number(r[name + '_q1'], 2)} to "
            f"{fmt_number(r[name + '_q3'], 2)})")


def _size_accuracy_section(data: ReportData) -> str:
    """Volume ratio and diameter error of the detected lesions, with a Bland-Altman plot."""
    rows = [[r["size_bin"], str(r["detected_lesions"]), _quartiles(r, "volume_ratio"),
             _quartiles(r, "diameter_error_mm"), fmt_number(r["abs_diameter_error_mm_median"], 2)]
            for r in data.result.size_accuracy]
    accuracy_table = table(["GT lesion size", "detected", "volume predicted/true, median (IQR)",
                            "longest diameter error mm, median (IQR)", "median |error| mm"], rows)
    plot = figures.volume_agreement_plot(data.volume_agreement)
    return ('<section><h2>Lesion size as drawn (detected lesions)</h2><div class="grid">'
            + figure(plot, "Each detected GT lesion against the predicted lesion(s) matched to it.")
            + f"</div>{accuracy_table}</section>")


def _short(group: str, column: str) -> str:
    """'age < 60' -> '< 60', 'sex = F' -> 'F' for plot ticks (the column is the section title)."""
    rest = group[len(column):].strip() if group.startswith(column) else group
    return rest[2:] if rest.startswith("= ") else rest


def _subgroup_plots(sg: dict, rows: list[dict], case_group: dict[str, str]) -> list[str]:
    """Box plots of the subgroup metrics, one box per group (none when no value is finite)."""
    groups = sg["groups"]
    panels = []
    for m in SUBGROUP_BOX_METRICS:
        lookup = {_short(g, sg["column"]): [r.get(m, math.nan) for r in rows if case_group.get(r["case_id"]) == g]
                  for g in groups}
        if any(np.isfinite(v) for vals in lookup.values() for v in vals):
            panels.append((cohort.LABELS[m], lookup, figures.metric_ylim(m)))
    return [figure(figures.box_plots(panels, cols=3 if len(groups) > 2 else 5))] if panels else []


def _subgroup_table(sg: dict) -> str:
    """Per metric: each group's median (IQR) and the test between the groups."""
    groups = sg["groups"]
    header = ["metric"] + [f"{html.escape(g)} median (IQR)" for g in groups]
    two = len(groups) == 2
    header += ["Δ median (95 % CI)", "Mann-Whitney p"] if two else (["Kruskal-Wallis p"] if len(groups) > 2 else [])
    trs = []
    for e in sg["metrics"]:
        row = [html.escape(e["label"])] + [f"{_med_iqr(e[g])} n={e[g]['n']}" for g in groups]
        if two:
            row += [f"{fmt_number(e.get('median_difference'))} ({fmt_number(e.get('ci_low'))} to "
                    f"{fmt_number(e.get('ci_high'))})", fmt_p_value(e.get("p"))]
        elif len(groups) > 2:
            row += [fmt_p_value(e.get("p"))]
        trs.append(row)
    return table(header, trs)


def _delong_text(sg: dict) -> str:
    if not sg.get("delong_auc"):
        return ""
    groups, d = sg["groups"], sg["delong_auc"]
    return (f"<p>Pooled voxel AUC: {html.escape(groups[0])} {fmt_number(d['auc_a'])} vs {html.escape(groups[1])} "
            f"{fmt_number(d['auc_b'])}; difference {fmt_number(d['difference'])} (95 % CI "
            f"{fmt_number(d['ci_low'])} to {fmt_number(d['ci_high'])}), {html.escape(d['test'])} "
            f"p = {fmt_p_value(d['p'])}.</p>")


def _subgroup_section(data: ReportData) -> str:
    out = []
    rows = data.result.rows
    for sg, case_group in zip(data.result.subgroups, data.subgroup_members, strict=True):
        figs = _subgroup_plots(sg, rows, case_group)
        counts = ", ".join(f"{html.escape(g)}: {n}" for g, n in sg["cases"].items())
        missing = f" No value for {len(sg['unassigned'])} case(s)." if sg["unassigned"] else ""
        if len(sg["groups"]) < 2:
            missing += " Only one group: nothing to compare."
        out.append(f"<section><h2>Subgroups: {html.escape(sg['column'])}</h2><p class=\"note\">Cases — {counts}."
                   f"{missing}</p><div class=\"grid\">{''.join(figs)}</div>{_subgroup_table(sg)}"
                   f"{_delong_text(sg)}</section>")
    return "".join(out)


def _operating_point_text(name: str, p: dict) -> str:
    if name == "lesion-f1":
        return (f"lesion sensitivity {fmt_number(p['sensitivity'])}, FP/case {fmt_number(p['fp_per_case'], 2)}, "
                f"lesion F1 {fmt_number(p['lesion_f1'])}")
    return (f"sensitivity {fmt_number(p['sensitivity'])}, specificity {fmt_number(p['specificity'], 5)}, "
            f"precision {fmt_number(p['precision'])}, F1 {fmt_number(p['f1'])}")


def _threshold_section(result: CohortResult) -> str:
    if not result.voxel_sweep:
        return ""
    sel = result.threshold_selection
    body = figure(figures.sweep_plot(result.voxel_sweep, sel))
    points = ""
    if sel:
        rows = [[name, fmt_number(p["threshold"], 2), _operating_point_text(name, p)]
                for name, p in sel["operating_points"].items()]
        points = (table(["criterion", "threshold", "at this threshold"], rows)
                  + f"<p>Suggested ({html.escape(sel['criterion'])}): <b>{fmt_number(sel['suggested_threshold'], 2)}"
                  f"</b> — <code>{html.escape(sel['usage'])}</code> (written to suggested_threshold.json).</p>"
                  '<p class="note">Voxel-wise Youden tends to very low thresholds: background voxels outnumber '
                  "lesion voxels ~1000:1, so specificity hardly changes while sensitivity rises. Lesion F1 "
                  "(FROC sweep) is the default criterion.</p>")
    return f'<section><h2>Threshold selection (development set)</h2><div class="grid">{body}</div>{points}</section>'


def _worst_section(data: ReportData) -> str:
    items = []
    for c, view in data.worst:
        m = c.metrics
        src = figures.thumbnail(view) if view is not None else None
        cap = (f"{c.case_id}: lesion-wise Dice {fmt_number(m['lesionwise_dice'], 2)}, "
               f"voxel Dice {fmt_number(m['dice'], 2)}, "
               f"{m['detected_lesions']}/{m['gt_lesions']} detected, {m['fp_lesions']} FP")
        items.append(figure(src, cap, 520) if src else f"<p>{html.escape(cap)} (no thumbnail)</p>")
    legend = (f'<p class="legend note">Outlines: <span style="background:{GT_COLOUR}"></span>ground truth '
              f'<span style="background:{PRED_COLOUR}"></span>prediction. Axial slice through the largest missed '
              "lesion or false positive; right panel zoomed to ~50 mm.</p>")
    return (f"<section><h2>Worst cases (lowest lesion-wise Dice)</h2>{legend}"
            f'<div class="grid">{"".join(items)}</div></section>')


def _cases_section(result: CohortResult) -> str:
    rows = [[html.escape(m["case_id"]), str(m["gt_lesions"]), str(m["detected_lesions"]), str(m["fp_lesions"]),
             fmt_number(m["dice"]), fmt_number(m["auc"]), fmt_number(m["lesion_sensitivity"]),
             fmt_number(m["lesion_f1"]), fmt_number(m["lesionwise_dice"])]
            for m in sorted(result.rows, key=lambda r: r["case_id"])]
    return ("<section><h2>All cases</h2>"
            + table(["case", "GT lesions", "detected", "FP", "voxel Dice", "AUC", "lesion sens.", "lesion F1",
                     "lesion-wise Dice"], rows) + "</section>")


def _conventions_section(result: CohortResult) -> str:
    cfg = result.config
    rule = {"overlap": "any overlap (a GT lesion is detected when any predicted lesion touches it)",
            "dice0.1": "Dice > 0.1 between a GT lesion and its touching predictions (Wald et al. 2025)",
            "brats": "BraTS-METS 2023 (GT merged after one dilation, prediction touching the dilated GT, "
                     "GT lesions ≤ 2 mm³ dropped)"}[cfg.match]
    items = [f"Matching rule: {rule}.",
             f"Prediction: {cfg.prediction_label()}"
             + (f", predicted lesions < {cfg.min_volume_mm3:g} mm³ removed" if cfg.min_volume_mm3 else "") + ".",
             f"Size bins: < 3 mm, 3–10 mm, ≥ 10 mm; FPs also counted from {cfg.fp_size_limit_mm:g} mm."]
    items += list(CONVENTIONS)
    probs = ""
    if result.failed or result.problems:
        probs = ('<p class="warn">Problems:</p><ul>'
                 + "".join(f"<li>{html.escape(str(p))}</li>" for p in result.failed + result.problems) + "</ul>")
    return ("<section><h2>Conventions</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items)
            + f"</ul>{probs}</section>")


def render_report(data: ReportData, title: str = "BrainMetSeg evaluation") -> str:
    """The whole report as one HTML string (``data``: :func:`~.report_data.report_data`)."""
    result = data.result
    cfg = result.config
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    models = sorted({r.get("model", "") for r in result.rows} - {""})
    model = f"model {', '.join(models)} · " if models else ""
    sub = (f"{len(result.cases)} cases · {model}matching '{cfg.match}' · prediction "
           f"{cfg.prediction_label()} · "
           f"brainmetseg {__version__} · {when}")
    warn = ""
    if result.failed:
        warn = (f'<section class="warn"><b>{len(result.failed)} case(s) could not be evaluated</b> — see '
                "Conventions / Problems at the end.</section>")
    body = (warn + _summary_section(result) + _plots_section(data) + _strata_section(result)
            + _subgroup_section(data) + _threshold_section(result) + _worst_section(data)
            + _cases_section(result) + _conventions_section(result))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p>"
            f"</header><main>{body}</main></body></html>")
