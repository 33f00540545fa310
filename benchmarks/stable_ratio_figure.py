"""Stable lesions' follow-up / baseline diameter ratio against their size: one panel per run of
``benchmarks/longitudinal_e2e.py`` (its JSON), each lesion pair a point, the +-0.03 band of
issue 26's target shaded, and per size bin the SD.

    python benchmarks/stable_ratio_figure.py A.json B.json --labels "static" "moved" -o fig.png

Only runs scored since the benchmark records each pair's analytic baseline diameter
(``stable_baseline_analytic_mm``) can be drawn; the ratio is measured / analytic, the mode
without the prior (``--mode with`` for the other).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from BrainMetSegLib.plotting import pyplot, save_png

sys.path.insert(0, str(Path(__file__).resolve().parent))
from longitudinal_e2e import SIZE_BINS_MM  # noqa: E402  (the benchmark summary's size bins)


def pairs_of(doc: dict, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(analytic baseline diameter mm, ratio / analytic) of every stable pair of the run."""
    sizes, ratios = [], []
    for row in doc["patients"]:
        scored = row.get(mode) or {}
        if "stable_baseline_analytic_mm" not in scored:
            raise SystemExit(f"{row['case']}: scored before the benchmark recorded baseline sizes; score it again "
                             "(longitudinal_e2e.py --score-only --scores NEW)")
        sizes += scored["stable_baseline_analytic_mm"]
        ratios += scored["stable_ratios_vs_analytic"]
    return np.asarray(sizes, float), np.asarray(ratios, float)


def draw(docs: list[dict], labels: list[str], mode: str):
    plt = pyplot()
    cols = min(2, len(docs))
    rows = -(-len(docs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(docs):]:
        ax.set_visible(False)
    for ax, doc, label in zip(axes.flat, docs, labels, strict=False):
        size, ratio = pairs_of(doc, mode)
        ax.axhspan(0.97, 1.03, color="tab:green", alpha=0.15, label="1.00 +- 0.03")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.scatter(size, ratio, s=14, alpha=0.7)
        for lo, hi in SIZE_BINS_MM:
            sel = (size >= lo) & (size < hi)
            if sel.sum() >= 2:
                x = float(np.median(size[sel]))
                ax.annotate(f"n {sel.sum()}\nSD {np.std(ratio[sel]):.3f}", (x, 0.72), ha="center", fontsize=8)
        for edge in (lo for lo, _ in SIZE_BINS_MM[1:]):
            ax.axvline(edge, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{label} (n {len(ratio)}, SD {np.std(ratio):.3f})", fontsize=10)
        ax.set_xlabel("baseline longest axial diameter, analytic (mm)")
        ax.set_ylim(0.65, 1.35)
    for row in axes:
        row[0].set_ylabel("follow-up / baseline diameter, / true ratio")
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Stable lesions on synthetic phantoms, segmented by the default model", fontsize=10)
    fig.tight_layout()
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="longitudinal_e2e.py JSON results")
    ap.add_argument("--labels", nargs="+", default=None, help="a panel title per run (default: the file names)")
    ap.add_argument("--mode", default="without", choices=["without", "with"], help="compare without / with the prior")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--overwrite", action="store_true", help="replace --output")
    args = ap.parse_args()
    labels = args.labels or [Path(p).stem for p in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(args.runs)} runs but {len(labels)} --labels")
    docs = [json.loads(Path(p).read_text()) for p in args.runs]
    save_png(draw(docs, labels, args.mode), args.output, dpi=110, overwrite=args.overwrite)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
