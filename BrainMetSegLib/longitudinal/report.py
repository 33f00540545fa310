"""Follow-up report: HTML (self-contained) with the RANO-BM table, the per-lesion table,
size curves and a montage of every lesion at every time point; the plots also as PNG files.

matplotlib (Agg) draws everything; images are embedded as base64 so the HTML can be mailed.
"""

from __future__ import annotations

import html

import numpy as np
import SimpleITK as sitk

from ..html_report import CSS
from ..plotting import png_data_uri, pyplot, report_png
from .colours import track_colour
from .rano import CAUTION, NOT_FROM_IMAGES, RESPONSE_WORDS
from .tracking import LongitudinalResult, TimePoint

MONTAGE_FIELD_MM = 48.0
MAX_MONTAGE_TRACKS = 30


def _x(result: LongitudinalResult) -> tuple[list[float], str]:
    days = [t.days for t in result.timepoints]
    if all(d is not None for d in days):
        return [float(d) for d in days], "days since baseline"
    return list(range(len(days))), "time point"


def curves_png(result: LongitudinalResult) -> bytes:
    """Per-lesion longest axial diameter and volume over time, and the RANO-BM target sum."""
    plt = pyplot()
    x, xlabel = _x(result)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for tr in result.tracks:
        colour = np.array(track_colour(tr.track_id)) / 255
        d = [a.longest_mm if a.seen else (0.0 if a.status in ("absent", "merged-into") else np.nan) for a in tr.at]
        v = [a.volume_mm3 if a.seen else (0.0 if a.status in ("absent", "merged-into") else np.nan) for a in tr.at]
        style = "-" if tr.role == "target" else "--"
        axes[0].plot(x, d, style, marker="o", color=colour, label=f"{tr.track_id} ({tr.role})")
        axes[1].plot(x, v, style, marker="o", color=colour)
    axes[0].axhline(10.0, color="grey", lw=0.8, ls=":")
    axes[0].set(title="longest axial diameter (mm)", xlabel=xlabel)
    axes[1].set(title="volume (mm³)", xlabel=xlabel)
    rano = result.rano
    sums = [rano.baseline_sum_mm] + [t.target_sum_mm for t in rano.timepoints]
    axes[2].plot(x, sums, "k-o")
    if rano.baseline_sum_mm > 0:
        axes[2].axhline(rano.baseline_sum_mm * (1 - rano.config.pr_decrease), color="tab:green", ls="--",
                        label=f"PR: -{rano.config.pr_decrease:.0%} of baseline")
        # The PD threshold moves with the nadir: one mark per follow-up.
        thresholds = [t.nadir_sum_mm * (1 + rano.config.pd_increase) for t in rano.timepoints]
        axes[2].plot(x[1:], thresholds, ls=":", marker="v", color="tab:red",
                     label=f"PD: +{rano.config.pd_increase:.0%} over nadir "
                           f"(and one lesion +{rano.config.pd_absolute_mm:g} mm)")
        axes[2].legend(fontsize=8)
    for t, resp in zip(x[1:], rano.timepoints, strict=True):
        axes[2].annotate(resp.response, (t, resp.target_sum_mm), textcoords="offset points", xytext=(0, 8),
                         ha="center", fontsize=9, weight="bold")
    axes[2].set(title="RANO-BM: sum of target longest diameters (mm)", xlabel=xlabel)
    if 0 < len(result.tracks) <= 20:  # no lesion at all: no legend to draw
        axes[0].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return report_png(fig)


def _centre_lps(result: LongitudinalResult, tr, t: int) -> np.ndarray | None:
    """Where to look for track ``tr`` on time point ``t`` (LPS mm): its own centroid when seen,
    else its last known position carried through the registrations."""
    def lps(at):
        r, a, s = at.centroid_ras_mm
        return np.array([-r, -a, s])

    if tr.at[t].seen:
        return lps(tr.at[t])
    seen = [s for s in range(len(tr.at)) if tr.at[s].seen]
    if not seen:
        return None
    s = min(seen, key=lambda k: abs(k - t))
    p = lps(tr.at[s])
    regs = result.registrations
    if s > 0 and regs[s] is not None:
        p = regs[s].followup_to_baseline_lps(p)[0]
    if t > 0 and regs[t] is not None:
        p = np.array(regs[t].transform.TransformPoint(tuple(float(v) for v in p)))
    return p


def montage_png(result: LongitudinalResult, timepoints: list[TimePoint]) -> bytes:
    """One row per lesion, one column per time point: the axial slice through the lesion with its
    outline in the lesion's colour (dashed frame where it is absent)."""
    plt = pyplot()
    tracks = result.tracks[:MAX_MONTAGE_TRACKS]
    n_t = len(timepoints)
    fig, axes = plt.subplots(max(len(tracks), 1), n_t, figsize=(2.2 * n_t, 2.2 * max(len(tracks), 1)),
                             squeeze=False)
    arrays = [sitk.GetArrayViewFromImage(tp.image) for tp in timepoints]
    maps = [sitk.GetArrayViewFromImage(m) for m in result.track_maps]
    for row, tr in enumerate(tracks):
        for t, tp in enumerate(timepoints):
            ax = axes[row, t]
            ax.set_xticks([])
            ax.set_yticks([])
            at = tr.at[t]
            if row == 0:
                ax.set_title(result.timepoints[t].name, fontsize=8)
            if t == 0:
                ax.set_ylabel(f"lesion {tr.track_id}\n{tr.role}", fontsize=8)
            p = _centre_lps(result, tr, t)
            if p is None or at.status == "not-yet-seen":
                ax.set_facecolor("#eeeeee")
                ax.text(0.5, 0.5, "not yet seen", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                continue
            idx = np.array(tp.image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in p)))
            i, j, k = np.round(idx).astype(int)
            size = tp.image.GetSize()
            if not (0 <= k < size[2]):
                continue
            sp = tp.image.GetSpacing()
            hx, hy = int(MONTAGE_FIELD_MM / 2 / sp[0]), int(MONTAGE_FIELD_MM / 2 / sp[1])
            xs = slice(max(i - hx, 0), min(i + hx, size[0]))
            ys = slice(max(j - hy, 0), min(j + hy, size[1]))
            img = np.asarray(arrays[t][k, ys, xs], float)
            lo, hi = np.percentile(arrays[t][k], [1, 99.5]) if arrays[t][k].any() else (0, 1)
            # Display in radiological convention is the viewer's business; here LPS index order, aspect kept.
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=sp[1] / sp[0], origin="upper")
            colour = np.array(track_colour(tr.track_id)) / 255
            mask = maps[t][k, ys, xs] == tr.track_id
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
            label = at.status if not at.seen else f"{at.longest_mm:.1f} mm, {at.volume_mm3:.0f} mm³"
            if at.status == "below-cut":
                label = "below the cut" + ("" if at.below_cut_probability is None else
                                           f", p {at.below_cut_probability:.2f}")
            ax.set_xlabel(label, fontsize=7)
            if not at.seen:
                ax.plot([i - xs.start], [j - ys.start], "+", color=colour, markersize=12, mew=1.2)
                for spine in ax.spines.values():
                    spine.set_linestyle("--")
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no lesion on any scan", ha="center", va="center")
    fig.tight_layout()
    return report_png(fig)


def html_report(result: LongitudinalResult, curves: bytes, montage: bytes, warnings: list[str] = (),
                forced: dict | None = None, prior: dict | None = None) -> str:
    """The report; ``warnings`` (consistency checks), ``forced`` (the ``--force`` record) and
    ``prior`` (the prior's record) are shown above the response."""
    rano = result.rano
    tps = result.timepoints
    n = len(result.tracks)
    shown = f"The first {MAX_MONTAGE_TRACKS} of {n} lesions. " if n > MAX_MONTAGE_TRACKS else ""
    head = "".join(f"<th>{html.escape(t.name)}</th>" for t in tps[1:])
    rows = [
        ("target sum (mm)", [f"{r.target_sum_mm:.1f}" for r in rano.timepoints]),
        ("nadir (mm)", [f"{r.nadir_sum_mm:.1f}" for r in rano.timepoints]),
        ("change vs baseline", [_pct(r.change_from_baseline_pct) for r in rano.timepoints]),
        ("change vs nadir", [_pct(r.change_from_nadir_pct) for r in rano.timepoints]),
        ("target lesions", [r.target_response for r in rano.timepoints]),
        ("non-target lesions", [r.nontarget_response for r in rano.timepoints]),
        ("new lesions", [", ".join(map(str, r.new_lesions)) or "none" for r in rano.timepoints]),
        ("equivocal new", [", ".join(map(str, r.equivocal_new)) or "none" for r in rano.timepoints]),
        ("<b>radiographic response</b>", [f"<b>{html.escape(r.response)}</b>"
                                          + (f" ({RESPONSE_WORDS[r.response]})" if r.response in CAUTION else "")
                                          for r in rano.timepoints]),
        ("confirmed (>= 4 weeks)", [{True: "yes", False: "no", None: "not yet"}[r.confirmed]
                                    if r.response in ("CR", "PR") else "" for r in rano.timepoints]),
        ("why", ["<br>".join(html.escape(x) for x in r.reasons) for r in rano.timepoints]),
    ]
    rano_html = "".join(f"<tr><td>{name}</td>" + "".join(f"<td>{v}</td>" for v in vals) + "</tr>"
                        for name, vals in rows)
    track_head = "".join(f"<th>{html.escape(t.name)}</th>" for t in tps)
    track_rows = []
    for tr in result.tracks:
        colour = "rgb({},{},{})".format(*track_colour(tr.track_id))
        cells = []
        for t, at in enumerate(tr.at):
            if at.seen:
                change = tr.change_pct(t)
                text = (f"{at.volume_mm3:.0f} mm³<br>{at.longest_mm:.1f} × {at.perpendicular_mm:.1f} mm"
                        + (f"<br>{change:+.0f} %" if change is not None and t != (tr.new_at or 0) else ""))
                if at.status != "present":
                    text += f"<br><i>{html.escape(at.status)}</i>"
                if at.promoted:
                    text += "<br><i>possible lesion, made a lesion by the prior</i>"
            elif at.status == "below-cut":
                p = at.below_cut_probability
                text = "<i>below the cut</i> (" + ("under the review floor" if p is None else f"p {p:.2f}") + ")"
            else:
                text = f"<i>{html.escape(at.status)}</i>" + (f" → {at.merged_into}" if at.merged_into else "")
            cells.append(f"<td>{text}</td>")
        flags = []
        if tr.new_at is not None:
            flags.append(f"new at {html.escape(tps[tr.new_at].name)}")
        if tr.resolved_at is not None:
            flags.append(f"resolved at {html.escape(tps[tr.resolved_at].name)}")
        track_rows.append(f'<tr><td><span style="display:inline-block;width:10px;height:10px;background:{colour}">'
                          f"</span> {tr.track_id}</td><td>{tr.role}</td>{''.join(cells)}"
                          f"<td>{html.escape('; '.join(flags))}</td></tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>BrainMetSeg follow-up</title>
<style>{CSS}</style></head><body>
<header><h1>Brain metastases: follow-up comparison</h1>
<p>{len(tps)} time points, {len(result.tracks)} lesions tracked; baseline {html.escape(tps[0].name)}</p></header><main>
<section><h2>RANO-BM (Lin et al., Lancet Oncol 2015) — radiographic response</h2>
<p class="warn">{html.escape(NOT_FROM_IMAGES)}</p>{_checks_html(warnings, forced, prior)}
<p class="note">Targets: {", ".join(map(str, rano.targets)) or "none (no measurable lesion at baseline)"};
non-targets: {", ".join(map(str, rano.nontargets)) or "none"}; baseline sum {rano.baseline_sum_mm:.1f} mm.</p>
<table><tr><th></th>{head}</tr>{rano_html}</table></section>
<section><h2>Lesions over time</h2><p class="note">Volume, longest × perpendicular axial diameter, change
against the lesion's first measurement. Ids are stable across time points.</p>
<table><tr><th>lesion</th><th>role</th>{track_head}<th>flags</th></tr>{''.join(track_rows)}</table></section>
<section><h2>Size curves</h2><figure><img src="{png_data_uri(curves)}" alt="size curves"></figure></section>
<section><h2>Each lesion at each time point</h2><figure><img src="{png_data_uri(montage)}" alt="montage"></figure>
<p class="note">{shown}Axial slice through the lesion ({MONTAGE_FIELD_MM:.0f} mm field), outline in the lesion's colour;
an absent lesion is shown where it was last seen, carried through the registration.</p></section>
</main></body></html>
"""


def _checks_html(warnings, forced, prior=None) -> str:
    out = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings)
    if prior:
        promoted = "; ".join(f"{name}: lesion(s) {', '.join(str(x['lesion_id']) for x in rows)}"
                             for name, rows in (prior.get("promoted") or {}).items() if rows)
        out += (f'<p class="note">Prior: {html.escape(prior["rule"])}.'
                + (f" Made lesions: {html.escape(promoted)}." if promoted else "") + "</p>")
    if forced:
        out += (f'<p class="warn">Compared although refused (--force, reason: {html.escape(forced["reason"])}): '
                + html.escape("; ".join(forced["overrode"])) + "</p>")
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{v:+.1f} %"
