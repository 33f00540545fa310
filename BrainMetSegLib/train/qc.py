"""Quality control of the training data: intensity histograms after normalisation.

For every case the brain voxels of each channel (z-scored by preprocessing) give a
histogram (PNG per case, and one overlay of all cases) and a few robust summary
statistics. A case is flagged as an outlier when one of its statistics lies more
than ``limit`` robust SDs (median absolute deviation x 1.4826) from the other cases'
median - the way a human would spot the odd curve in the overlay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BINS = np.linspace(-5.0, 8.0, 131)
STATS = ("p01", "p50", "p99", "skew", "frac_above_4sd")


@dataclass
class CaseQC:
    case_id: str
    channel: int
    stats: dict[str, float]
    histogram: np.ndarray
    outlier: bool = False
    reasons: list[str] = field(default_factory=list)


def case_statistics(values: np.ndarray) -> dict[str, float]:
    """Robust summary of normalised brain intensities (1-D array)."""
    from scipy import stats

    p01, p50, p99 = np.percentile(values, [1, 50, 99])
    return {"p01": float(p01), "p50": float(p50), "p99": float(p99),
            "skew": float(stats.skew(values)), "frac_above_4sd": float(np.mean(values > 4.0))}


def case_qc(case_id: str, image: np.ndarray, brain: np.ndarray) -> list[CaseQC]:
    """Histogram and statistics per channel of a (C, Z, Y, X) normalised image inside ``brain``."""
    out = []
    for c in range(image.shape[0]):
        values = image[c][brain]
        hist, _ = np.histogram(np.clip(values, BINS[0], BINS[-1]), BINS, density=True)
        out.append(CaseQC(case_id, c, case_statistics(values), hist))
    return out


def flag_outliers(items: list[CaseQC], limit: float = 3.5) -> list[CaseQC]:
    """Mark cases whose statistics are > ``limit`` robust SDs from the median (per channel)."""
    for channel in sorted({q.channel for q in items}):
        group = [q for q in items if q.channel == channel]
        if len(group) < 4:
            continue  # too few cases for a robust spread
        for name in STATS:
            vals = np.array([q.stats[name] for q in group])
            med = np.median(vals)
            mad = 1.4826 * np.median(np.abs(vals - med))
            spread = max(mad, 1e-3 * max(abs(med), 1.0))
            for q, v in zip(group, vals, strict=True):
                z = (v - med) / spread
                if abs(z) > limit:
                    q.outlier = True
                    q.reasons.append(f"{name}={v:.3g} ({z:+.1f} robust SD)")
    return items


def _plot(ax, items: list[CaseQC]) -> None:
    centres = (BINS[:-1] + BINS[1:]) / 2
    for q in items:
        ax.plot(centres, q.histogram, lw=1.6 if q.outlier else 0.6,
                color="tab:red" if q.outlier else "tab:blue", alpha=1.0 if q.outlier else 0.5)
    ax.set_xlabel("intensity after z-score (SD of brain)")
    ax.set_ylabel("density")


def write_qc(items: list[CaseQC], folder: str | Path, per_case: bool = True) -> Path:
    """Write ``qc.csv``, ``histograms.png`` (all cases, outliers red) and per-case PNGs into ``folder``."""
    from ..plotting import pyplot, save_png
    from ..staging import write_text

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["case_id,channel," + ",".join(STATS) + ",outlier,reasons"]
    for q in items:
        lines.append(f"{q.case_id},{q.channel}," + ",".join(f"{q.stats[s]:.5g}" for s in STATS)
                     + f",{int(q.outlier)},\"{'; '.join(q.reasons)}\"")
    write_text("\n".join(lines) + "\n", folder / "qc.csv", overwrite=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    _plot(ax, items)
    n_out = len({q.case_id for q in items if q.outlier})
    ax.set_title(f"{len({q.case_id for q in items})} cases, {n_out} flagged (red)")
    fig.tight_layout()
    save_png(fig, folder / "histograms.png", dpi=90, overwrite=True)
    if per_case:
        for q in items:
            fig, ax = plt.subplots(figsize=(4, 2.6))
            _plot(ax, [q])
            ax.set_title(f"{q.case_id} ch{q.channel}" + (" OUTLIER" if q.outlier else ""), fontsize=9)
            fig.tight_layout()
            save_png(fig, folder / f"{q.case_id}_ch{q.channel}.png", dpi=70, overwrite=True)
    return folder / "qc.csv"
