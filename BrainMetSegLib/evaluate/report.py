"""Self-contained HTML report: summary table, plots (base64 PNG), worst cases with thumbnails.

Plots are drawn with matplotlib's Agg backend; nothing is fetched at view time
(inline CSS, images embedded), so the file can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io as _io
import math

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..lesions import axial_axis
from . import cohort, size_accuracy
from .loading import load_case, read_mask
from .result import CONVENTIONS, CohortResult

GT_COLOUR = "#00d060"
PRED_COLOUR = "#ff3399"
BOX_METRICS = ("dice", "lesion_sensitivity", "lesion_ppv", "lesion_f1", "lesionwise_dice",
               "fp_lesions", "auc", "precision", "recall", "mcc")
SUBGROUP_BOX_METRICS = ("dice", "lesion_sensitivity", "lesion_f1", "fp_lesions", "auc")
WORST_CASES = 6

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2b45;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c5cde0;font-size:13px}
main{padding:16px 32px;max-width:1240px}
section{background:#fff;border-radius:8px;padding:14px 20px;margin:14px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:4px 0 10px;color:#1d2b45}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:right}
th{background:#eef1f6;text-align:center} td:first-child,th:first-child{text-align:left}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1;min-width:150px;background:#eef3fb;border-radius:8px;padding:10px 14px}
.kpi b{display:block;font-size:24px;color:#1d2b45} .kpi span{font-size:12px;color:#55607a}
.grid{display:flex;flex-wrap:wrap;gap:10px} .grid figure{margin:0;max-width:100%} figure img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#55607a;max-width:520px}
.note{font-size:12px;color:#55607a} .warn{color:#a03000}
.sig{font-weight:bold;color:#a03000}
ul{margin:4px 0 4px 18px;padding:0;font-size:13px}
.legend span{display:inline-block;width:14px;height:4px;margin:0 4px 3px 10px;vertical-align:middle}
"""


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def _p(v) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    text = "<0.001" if v < 0.001 else f"{v:.3f}"
    return f'<span class="sig">{text}</span>' if v < 0.05 else text


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(src: str, caption: str = "", width: int | None = None) -> str:
    w = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}"{w} alt="{html.escape(caption)}">{cap}</figure>'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- plots

def _box_plots(panels: list[tuple[str, dict[str, list[float]], tuple | None]], cols: int = 5) -> str:
    """One figure of box plots (with the per-patient points), one panel per metric.

    panels: (title, {group name: values}, y limits or None).
    """
    plt = _plt()
    rows = math.ceil(len(panels) / cols)
    n_groups = max(len(p[1]) for p in panels)
    width = min(cols, len(panels)) * (1.2 + 0.6 * n_groups)
    fig, axes = plt.subplots(rows, min(cols, len(panels)), figsize=(width, 2.9 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (title, groups, ylim) in zip(axes.ravel(), panels, strict=False):
        data = [np.asarray([v for v in vals if np.isfinite(v)], float) for vals in groups.values()]
        names = [f"{k}\n(n={len(d)})" if len(groups) > 1 else f"n={len(d)}" for k, d in zip(groups, data, strict=True)]
        if any(len(d) for d in data):
            ax.boxplot([d if len(d) else [np.nan] for d in data], widths=0.5, showfliers=False,
                       medianprops={"color": "#1d2b45", "linewidth": 2})
            for i, d in enumerate(data, start=1):
                ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=10, alpha=0.6, color="#3b7dd8", zorder=3)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _ylim(metric: str):
    if metric in ("fp_lesions", "fp_lesions_ge10mm", "lesionwise_hd95_mm", "seconds"):
        return None
    return (-1.05, 1.05) if metric == "mcc" else (-0.03, 1.03)


def _size_plot(rows: list[dict]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 3.0))
    names = [r["size_bin"] for r in rows]
    sens = np.array([r["sensitivity"] if np.isfinite(r["sensitivity"]) else 0 for r in rows])
    lo = np.array([r["ci_low"] if np.isfinite(r["ci_low"]) else 0 for r in rows])
    hi = np.array([r["ci_high"] if np.isfinite(r["ci_high"]) else 0 for r in rows])
    yerr = np.clip([sens - lo, hi - sens], 0, None)  # Wilson bounds can sit 1e-17 inside [0, 1]
    ax.bar(names, sens, color=["#8fb3e8", "#3b7dd8", "#1d4f9a"], yerr=yerr, capsize=4)
    for i, r in enumerate(rows):
        ax.text(i, 0.02, f"{r['detected']}/{r['lesions']}", ha="center", va="bottom", fontsize=8, color="white")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("lesion sensitivity")
    ax.set_xlabel("GT lesion longest diameter")
    ax.set_title("Sensitivity by lesion size (95 % Wilson CI)", fontsize=10)
    return _png(fig)


def _froc_plot(rows: list[dict], operating: float | None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    fp = [r["fp_per_case"] for r in rows]
    sens = [r["sensitivity"] for r in rows]
    ax.plot(fp, sens, "-o", color="#3b7dd8", ms=3)
    for r in rows:
        if abs(r["threshold"] * 10 - round(r["threshold"] * 10)) < 1e-6 and int(round(r["threshold"] * 10)) % 2:
            ax.annotate(f"{r['threshold']:.1f}", (r["fp_per_case"], r["sensitivity"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -8))
    if operating is not None:
        near = min(rows, key=lambda r: abs(r["threshold"] - operating))
        ax.plot([near["fp_per_case"]], [near["sensitivity"]], "*", color=PRED_COLOUR, ms=12,
                label=f"threshold {near['threshold']:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("false positives per case")
    ax.set_ylabel("lesion sensitivity")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("FROC (probability threshold annotated)", fontsize=10)
    return _png(fig)


def _sweep_plot(rows: list[dict], selection: dict | None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    t = [r["threshold"] for r in rows]
    for key, colour in (("sensitivity", "#3b7dd8"), ("precision", "#e08a00"), ("f1", "#1d2b45"),
                        ("youden", "#00a050")):
        ax.plot(t, [r[key] for r in rows], label=key, color=colour)
    if selection:
        for name, point in selection["operating_points"].items():
            ax.axvline(point["threshold"], ls="--", lw=0.8, color="grey")
            ax.text(point["threshold"], 1.02, name, rotation=90, fontsize=7, va="bottom")
    ax.set_xlabel("probability threshold")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title("Voxel-wise threshold sweep (pooled, inside brain)", fontsize=10)
    return _png(fig)


# ----------------------------------------------------------------------------- thumbnails

def _focus(case) -> tuple[tuple[float, float, float] | None, str]:
    """Centroid (k, j, i) of the largest missed GT lesion or FP, whichever is larger."""
    missed = [g for g in case.gt_lesions if not g.detected and not g.excluded]
    fps = [p for p in case.pred_lesions if not p.true_positive]
    best = None
    for item, what in [(g, "missed lesion") for g in missed] + [(p, "false positive") for p in fps]:
        if best is None or item.voxels > best[0].voxels:
            best = (item, what)
    if best is None and case.gt_lesions:
        g = max(case.gt_lesions, key=lambda x: x.voxels)
        return g.centroid_kji, f"largest lesion (Dice {g.dice:.2f})"
    if best is None:
        return None, "no lesion"
    item, what = best
    return item.centroid_kji, f"largest {what} ({item.longest_diameter_mm:.1f} mm)"


def display_axes(direction, axis: int) -> tuple[int, int]:
    """(row, column) array axes of a slice across ``axis``: rows run along LPS y (A -> P)."""
    d = np.reshape(direction, (3, 3))
    in_plane = [a for a in range(3) if a != axis]
    row_axis = max(in_plane, key=lambda a: abs(d[1, 2 - a]))  # array axis a is image axis 2 - a
    return row_axis, next(a for a in in_plane if a != row_axis)


def radiological_slice(a: np.ndarray, direction, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` across array ``axis`` of a (Z, Y, X) array, oriented for display:
    anterior up, patient right on the screen's left (radiological convention)."""
    d = np.reshape(direction, (3, 3))
    row_axis, col_axis = display_axes(direction, axis)
    plane = np.take(a, index, axis=axis)
    if [x for x in range(3) if x != axis].index(row_axis) == 1:
        plane = plane.T
    if d[1, 2 - row_axis] < 0:
        plane = plane[::-1]
    if d[0, 2 - col_axis] < 0:
        plane = plane[:, ::-1]
    return plane


def _thumbnail(case, files, config) -> str | None:
    plt = _plt()
    try:
        loaded = load_case(files)
    except Exception:  # the case was evaluated; a thumbnail must never break the report
        return None
    from .case import binarise_prediction

    gt = sitk.GetArrayFromImage(loaded.gt) > 0
    lab = sitk.GetArrayFromImage(loaded.pred)
    prob = None if loaded.probability is None else sitk.GetArrayFromImage(loaded.probability)
    pred = binarise_prediction(lab, prob, config.point, loaded.gt.GetSpacing())
    background, bg_name = None, "masks only"
    if files.image is not None:
        try:
            img = read_mask(files.image, "CE-T1")
            if img.GetSize() == loaded.gt.GetSize():
                background, bg_name = sitk.GetArrayFromImage(img).astype(np.float32), "CE-T1"
        except Exception:
            background = None
    if background is None and prob is not None:
        background, bg_name = prob, "probability map"
    axis = axial_axis(loaded.gt)
    centre, what = _focus(case)
    if centre is None:
        centre = tuple(s / 2 for s in gt.shape)
    s = int(round(centre[axis]))
    bg3 = background if background is not None else np.zeros(gt.shape, np.float32)
    spacing_zyx = loaded.gt.GetSpacing()[::-1]
    direction = loaded.gt.GetDirection()
    row_axis, col_axis = display_axes(direction, axis)

    def view(a):
        return radiological_slice(a, direction, axis, s)

    g2, p2, bg = view(gt), view(pred), view(bg3)
    marker = np.zeros(gt.shape, bool)
    marker[tuple(int(round(c)) for c in centre)] = True
    c = np.argwhere(view(marker))
    c = c[0] if len(c) else np.array(g2.shape) // 2
    aspect = spacing_zyx[row_axis] / spacing_zyx[col_axis]
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.7))
    half = [max(8, int(round(25 / spacing_zyx[a]))) for a in (row_axis, col_axis)]  # ~50 mm zoom window
    zoom = (slice(max(c[0] - half[0], 0), c[0] + half[0]), slice(max(c[1] - half[1], 0), c[1] + half[1]))
    lo, hi = np.percentile(bg, [1, 99.5]) if bg.any() else (0, 1)
    for ax, window in zip(axes, [(slice(None), slice(None)), zoom], strict=True):
        ax.imshow(bg[window], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect,
                  interpolation="nearest")
        for mask, colour in ((g2, GT_COLOUR), (p2, PRED_COLOUR)):
            m = mask[window].astype(float)
            if m.any() and min(m.shape) > 1:
                ax.contour(m, levels=[0.5], colors=colour, linewidths=1.0)
        ax.set_axis_off()
    axes[0].set_title(f"slice {s} ({bg_name})", fontsize=8)
    axes[1].set_title(what, fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _med_iqr(d: dict) -> str:
    return f"{_fmt(d['median'])} ({_fmt(d['q1'])} to {_fmt(d['q3'])})" if d["n"] else "–"


def _mean_sd(d: dict) -> str:
    return f"{_fmt(d['mean'])} ± {_fmt(d['sd'])}" if d["n"] else "–"


def _summary_section(result: CohortResult) -> str:
    rows = result.rows
    by = {s["metric"]: s for s in result.summary}
    n_gt = sum(r["gt_lesions"] for r in rows)
    n_det = sum(r["detected_lesions"] for r in rows)
    n_fp = sum(r["fp_lesions"] for r in rows)
    kpis = [
        (f"{len(rows)}", "cases evaluated" + (f" ({len(result.failed)} failed)" if result.failed else "")),
        (f"{n_det}/{n_gt}", f"GT lesions detected ({_fmt(n_det / n_gt if n_gt else math.nan, 2)})"),
        (f"{n_fp / len(rows):.2f}", "false positives per case (mean)"),
        (_fmt(by["dice"]["median"]), "median voxel Dice"),
        (_fmt(by["lesionwise_dice"]["median"]), "median lesion-wise Dice (BraTS)"),
    ]
    if result.pooled_auc:
        kpis.append((_fmt(result.pooled_auc["auc"]), "pooled voxel AUC"))
    k = "".join(f'<div class="kpi"><b>{a}</b><span>{html.escape(b)}</span></div>' for a, b in kpis)
    table = _table(["metric", "n", "median (IQR)", "mean ± SD"],
                   [[html.escape(s["label"]), str(s["n"]), _med_iqr(s), _mean_sd(s)] for s in result.summary])
    extra = ""
    if result.pooled_auc:
        a = result.pooled_auc
        extra = (f'<p class="note">Pooled voxel AUC {a["auc"]:.3f} (95 % CI {a["ci_low"]:.3f} to {a["ci_high"]:.3f}, '
                 f'{html.escape(a["method"])}).</p>')
    return (f'<section><h2>Summary (per patient, then over patients)</h2><div class="kpis">{k}</div>'
            f"{table}{extra}</section>")


def _strata_section(result: CohortResult) -> str:
    rows = [[s["stratum"], str(s["cases"]), _fmt(s["lesion_sensitivity_median"]), _fmt(s["lesion_f1_median"]),
             _fmt(s["fp_lesions_mean"], 2), _fmt(s["fp_lesions_ge10mm_mean"], 2), _fmt(s["dice_median"]),
             _fmt(s["lesionwise_dice_median"])] for s in result.strata]
    return ("<section><h2>Strata by number of GT lesions</h2>"
            + _table(["GT lesions", "cases", "median lesion sensitivity", "median lesion F1", "mean FP / case",
                      "mean FP ≥ 10 mm / case", "median voxel Dice", "median lesion-wise Dice"], rows)
            + "</section>")


def _plots_section(result: CohortResult) -> str:
    rows = result.rows
    panels = []
    for m in BOX_METRICS:
        vals = [r.get(m, math.nan) for r in rows]
        if any(np.isfinite(v) for v in vals):
            panels.append((cohort.LABELS[m], {"all cases": vals}, _ylim(m)))
    figs = [_img(_box_plots(panels))] if panels else []
    size_rows = result.size_sensitivity
    size_table = _table(["size", "GT lesions", "detected", "sensitivity (95 % CI)"],
                        [[r["size_bin"], str(r["lesions"]), str(r["detected"]),
                          f"{_fmt(r['sensitivity'])} ({_fmt(r['ci_low'])} to {_fmt(r['ci_high'])})"]
                         for r in size_rows])
    parts = [f'<section><h2>Per-patient distributions</h2><div class="grid">{"".join(figs)}</div></section>',
             '<section><h2>Detection by lesion size and threshold</h2><div class="grid">',
             _img(_size_plot(size_rows))]
    if result.froc:
        parts.append(_img(_froc_plot(result.froc, result.config.threshold or 0.5),
                          f"Pooled over {result.froc[0]['cases']} cases with probability maps, "
                          f"matching rule '{result.config.match}'."))
    parts.append(f"</div>{size_table}</section>")
    return "".join(parts) + _size_accuracy_section(result)


def _size_accuracy_section(result: CohortResult) -> str:
    """Volume ratio and diameter error of the detected lesions, with a Bland-Altman plot."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    size_accuracy.bland_altman([g for c in result.cases for g in c.gt_lesions], ax)
    rows = [[r["size_bin"], str(r["detected_lesions"]),
             f"{_fmt(r['volume_ratio_median'], 2)} ({_fmt(r['volume_ratio_q1'], 2)} to {_fmt(r['volume_ratio_q3'], 2)})",
             f"{_fmt(r['diameter_error_mm_median'], 2)} ({_fmt(r['diameter_error_mm_q1'], 2)} to "
             f"{_fmt(r['diameter_error_mm_q3'], 2)})", _fmt(r["abs_diameter_error_mm_median"], 2)]
            for r in result.size_accuracy]
    table = _table(["GT lesion size", "detected", "volume predicted/true, median (IQR)",
                    "longest diameter error mm, median (IQR)", "median |error| mm"], rows)
    return ('<section><h2>Lesion size as drawn (detected lesions)</h2><div class="grid">'
            + _img(_png(fig), "Each detected GT lesion against the predicted lesion(s) matched to it.")
            + f"</div>{table}</section>")


def _short(group: str, column: str) -> str:
    """'age < 60' -> '< 60', 'sex = F' -> 'F' for plot ticks (the column is the section title)."""
    rest = group[len(column):].strip() if group.startswith(column) else group
    return rest[2:] if rest.startswith("= ") else rest


def _subgroup_section(result: CohortResult) -> str:
    out = []
    rows = result.rows
    for sg in result.subgroups:
        groups = sg["groups"]
        spec = cohort.SubgroupSpec(sg["column"], sg["cut"])
        case_group, _ = cohort.assign_groups(spec, result.clinical, [r["case_id"] for r in rows])
        panels = []
        for m in SUBGROUP_BOX_METRICS:
            lookup = {_short(g, sg["column"]): [r.get(m, math.nan) for r in rows if case_group.get(r["case_id"]) == g]
                      for g in groups}
            if any(np.isfinite(v) for vals in lookup.values() for v in vals):
                panels.append((cohort.LABELS[m], lookup, _ylim(m)))
        figs = [_img(_box_plots(panels, cols=3 if len(groups) > 2 else 5))] if panels else []
        header = ["metric"] + [f"{html.escape(g)} median (IQR)" for g in groups]
        two = len(groups) == 2
        header += ["Δ median (95 % CI)", "Mann-Whitney p"] if two else (["Kruskal-Wallis p"] if len(groups) > 2 else [])
        trs = []
        for e in sg["metrics"]:
            row = [html.escape(e["label"])] + [f"{_med_iqr(e[g])} n={e[g]['n']}" for g in groups]
            if two:
                row += [f"{_fmt(e.get('median_difference'))} ({_fmt(e.get('ci_low'))} to {_fmt(e.get('ci_high'))})",
                        _p(e.get("p"))]
            elif len(groups) > 2:
                row += [_p(e.get("p"))]
            trs.append(row)
        dl = ""
        if sg.get("delong_auc"):
            d = sg["delong_auc"]
            dl = (f"<p>Pooled voxel AUC: {html.escape(groups[0])} {_fmt(d['auc_a'])} vs {html.escape(groups[1])} "
                  f"{_fmt(d['auc_b'])}; difference {_fmt(d['difference'])} (95 % CI {_fmt(d['ci_low'])} to "
                  f"{_fmt(d['ci_high'])}), {html.escape(d['test'])} p = {_p(d['p'])}.</p>")
        counts = ", ".join(f"{html.escape(g)}: {n}" for g, n in sg["cases"].items())
        missing = f" No value for {len(sg['unassigned'])} case(s)." if sg["unassigned"] else ""
        if len(groups) < 2:
            missing += " Only one group: nothing to compare."
        out.append(f"<section><h2>Subgroups: {html.escape(sg['column'])}</h2><p class=\"note\">Cases — {counts}."
                   f"{missing}</p><div class=\"grid\">{''.join(figs)}</div>{_table(header, trs)}{dl}</section>")
    return "".join(out)


def _threshold_section(result: CohortResult) -> str:
    if not result.voxel_sweep:
        return ""
    sel = result.threshold_selection
    body = _img(_sweep_plot(result.voxel_sweep, sel))
    table = ""
    if sel:
        rows = []
        for name, p in sel["operating_points"].items():
            if name == "lesion-f1":
                rows.append([name, _fmt(p["threshold"], 2), f"lesion sensitivity {_fmt(p['sensitivity'])}, "
                             f"FP/case {_fmt(p['fp_per_case'], 2)}, lesion F1 {_fmt(p['lesion_f1'])}"])
            else:
                rows.append([name, _fmt(p["threshold"], 2), f"sensitivity {_fmt(p['sensitivity'])}, specificity "
                             f"{_fmt(p['specificity'], 5)}, precision {_fmt(p['precision'])}, F1 {_fmt(p['f1'])}"])
        table = (_table(["criterion", "threshold", "at this threshold"], rows)
                 + f"<p>Suggested ({html.escape(sel['criterion'])}): <b>{_fmt(sel['suggested_threshold'], 2)}</b> — "
                 f"<code>{html.escape(sel['usage'])}</code> (written to suggested_threshold.json).</p>"
                 '<p class="note">Voxel-wise Youden tends to very low thresholds: background voxels outnumber '
                 "lesion voxels ~1000:1, so specificity hardly changes while sensitivity rises. Lesion F1 "
                 "(FROC sweep) is the default criterion.</p>")
    return f'<section><h2>Threshold selection (development set)</h2><div class="grid">{body}</div>{table}</section>'


def _worst_section(result: CohortResult, n: int = WORST_CASES) -> str:
    def key(c):
        v = c.metrics.get("lesionwise_dice", math.nan)
        return (v if np.isfinite(v) else 2.0, -c.metrics.get("fp_lesions", 0))

    worst = sorted(result.cases, key=key)[:n]
    items = []
    for c in worst:
        m = c.metrics
        src = _thumbnail(c, result.files[c.case_id], result.config)
        cap = (f"{c.case_id}: lesion-wise Dice {_fmt(m['lesionwise_dice'], 2)}, voxel Dice {_fmt(m['dice'], 2)}, "
               f"{m['detected_lesions']}/{m['gt_lesions']} detected, {m['fp_lesions']} FP")
        items.append(_img(src, cap, 520) if src else f"<p>{html.escape(cap)} (no thumbnail)</p>")
    legend = (f'<p class="legend note">Outlines: <span style="background:{GT_COLOUR}"></span>ground truth '
              f'<span style="background:{PRED_COLOUR}"></span>prediction. Axial slice through the largest missed '
              "lesion or false positive; right panel zoomed to ~50 mm.</p>")
    return (f"<section><h2>Worst cases (lowest lesion-wise Dice)</h2>{legend}"
            f'<div class="grid">{"".join(items)}</div></section>')


def _cases_section(result: CohortResult) -> str:
    rows = [[html.escape(m["case_id"]), str(m["gt_lesions"]), str(m["detected_lesions"]), str(m["fp_lesions"]),
             _fmt(m["dice"]), _fmt(m["auc"]), _fmt(m["lesion_sensitivity"]), _fmt(m["lesion_f1"]),
             _fmt(m["lesionwise_dice"])] for m in sorted(result.rows, key=lambda r: r["case_id"])]
    return ("<section><h2>All cases</h2>"
            + _table(["case", "GT lesions", "detected", "FP", "voxel Dice", "AUC", "lesion sens.", "lesion F1",
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


def render_report(result: CohortResult, title: str = "BrainMetSeg evaluation") -> str:
    """The whole report as one HTML string."""
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
    body = (warn + _summary_section(result) + _plots_section(result) + _strata_section(result)
            + _subgroup_section(result) + _threshold_section(result) + _worst_section(result)
            + _cases_section(result) + _conventions_section(result))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p>"
            f"</header><main>{body}</main></body></html>")
