"""The evaluation report's figures, drawn from data the evaluation computed (nothing read or
thresholded here); each is returned as an embedded PNG (``data:`` URI, 90 dpi, tight box).
"""

from __future__ import annotations

import math

import numpy as np

from ..plotting import figure_data_uri, pyplot
from .lesionwise import SIZE_BIN_NAMES
from .size_accuracy import VolumeAgreement
from .thumbnails import CaseSlice

GT_COLOUR = "#00d060"
PRED_COLOUR = "#ff3399"


def box_plots(panels: list[tuple[str, dict[str, list[float]], tuple | None]], cols: int = 5) -> str:
    """One figure of box plots (with the per-patient points), one panel per metric.

    panels: (title, {group name: values}, y limits or None).
    """
    plt = pyplot()
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
    return figure_data_uri(fig)


def metric_ylim(metric: str):
    """y range of a metric's box plot: None for counts and mm (open-ended), else [0, 1] (MCC [-1, 1])."""
    if metric in ("fp_lesions", "fp_lesions_ge10mm", "lesionwise_hd95_mm", "seconds"):
        return None
    return (-1.05, 1.05) if metric == "mcc" else (-0.03, 1.03)


def size_plot(rows: list[dict]) -> str:
    """Lesion sensitivity per GT size bin with its Wilson 95 % CI (rows: cohort.sensitivity_by_size)."""
    plt = pyplot()
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
    return figure_data_uri(fig)


def _finish(fig, ax, xlabel: str, ylim: tuple[float, float], title: str) -> str:
    """x label, y range, grid and title of a one-panel plot; the plot embedded."""
    ax.set_xlabel(xlabel)
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return figure_data_uri(fig)


def froc_plot(rows: list[dict], operating: float | None) -> str:
    """Pooled FROC (rows: cohort.pooled_froc), the point nearest the ``operating`` threshold starred."""
    plt = pyplot()
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
    ax.set_ylabel("lesion sensitivity")
    return _finish(fig, ax, "false positives per case", (0, 1.05), "FROC (probability threshold annotated)")


def sweep_plot(rows: list[dict], selection: dict | None) -> str:
    """Voxel-wise sensitivity, precision, F1 and Youden against the threshold, selected points marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    t = [r["threshold"] for r in rows]
    for key, colour in (("sensitivity", "#3b7dd8"), ("precision", "#e08a00"), ("f1", "#1d2b45"),
                        ("youden", "#00a050")):
        ax.plot(t, [r[key] for r in rows], label=key, color=colour)
    if selection:
        for name, point in selection["operating_points"].items():
            ax.axvline(point["threshold"], ls="--", lw=0.8, color="grey")
            ax.text(point["threshold"], 1.02, name, rotation=90, fontsize=7, va="bottom")
    ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, ax, "probability threshold", (0, 1.15), "Voxel-wise threshold sweep (pooled, inside brain)")


def volume_agreement_plot(agreement: VolumeAgreement | None) -> str:
    """Bland-Altman plot of lesion volume: predicted - true volume (mm^3) against their mean (log
    axis: volumes span three decades), with the bias and 95 % limits."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    if agreement is None:
        ax.text(0.5, 0.5, "no detected lesion", ha="center", transform=ax.transAxes)
        return figure_data_uri(fig)
    mean, diff = agreement.mean_mm3, agreement.difference_mm3
    for name, colour in zip(SIZE_BIN_NAMES, ("tab:red", "tab:orange", "tab:blue"), strict=True):
        sel = np.array([b == name for b in agreement.size_bins])
        ax.scatter(mean[sel], diff[sel], s=10, alpha=0.7, color=colour, label=f"{name} ({sel.sum()})")
    bias, sd = agreement.bias_mm3, agreement.sd_mm3
    for y, style in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
        ax.axhline(y, color="grey", linestyle=style, linewidth=1)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("mean of predicted and true volume (mm³)")
    ax.set_ylabel("predicted − true volume (mm³)")
    ax.set_title(f"Bland-Altman, lesion volume (bias {bias:.0f} mm³, limits ±{1.96 * sd:.0f})")
    ax.legend(fontsize=8, loc="best")
    return figure_data_uri(fig)


def thumbnail(view: CaseSlice) -> str:
    """The slice whole (left) and zoomed on the error (right), GT and prediction outlined."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.7))
    bg = view.background
    lo, hi = np.percentile(bg, [1, 99.5]) if bg.any() else (0, 1)
    for ax, window in zip(axes, [(slice(None), slice(None)), view.zoom], strict=True):
        ax.imshow(bg[window], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=view.aspect,
                  interpolation="nearest")
        for mask, colour in ((view.gt, GT_COLOUR), (view.pred, PRED_COLOUR)):
            m = mask[window].astype(float)
            if m.any() and min(m.shape) > 1:
                ax.contour(m, levels=[0.5], colors=colour, linewidths=1.0)
        ax.set_axis_off()
    axes[0].set_title(f"slice {view.slice_index} ({view.background_name})", fontsize=8)
    axes[1].set_title(view.focus, fontsize=8)
    return figure_data_uri(fig)
