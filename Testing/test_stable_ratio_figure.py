"""benchmarks/stable_ratio_figure.py: draws each run's stable pairs against size, and refuses a
run scored before the benchmark recorded the pairs' baseline sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stable_ratio_figure.py"


def _doc(with_sizes: bool = True) -> dict:
    scored = {"stable_ratios_vs_analytic": [0.98, 1.02, 1.10, 0.95]}
    if with_sizes:
        scored["stable_baseline_analytic_mm"] = [4.5, 6.0, 8.0, 14.0]
    return {"patients": [{"case": "synth_000", "without": scored, "with": scored}]}


def test_pairs_and_figure(tmp_path):
    fig_script = load_script(SCRIPT, "stable_ratio_figure")
    size, ratio = fig_script.pairs_of(_doc(), "without")
    assert size.tolist() == [4.5, 6.0, 8.0, 14.0] and ratio.tolist() == [0.98, 1.02, 1.10, 0.95]
    runs = []
    for name in ("a", "b"):
        runs.append(tmp_path / f"{name}.json")
        runs[-1].write_text(json.dumps(_doc()))
    import subprocess
    import sys

    out = tmp_path / "fig.png"
    subprocess.run([sys.executable, str(SCRIPT), *map(str, runs), "--labels", "A", "B", "-o", str(out)], check=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = subprocess.run([sys.executable, str(SCRIPT), str(runs[0]), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode != 0 and "exists" in done.stderr  # nothing replaced without --overwrite


def test_a_run_scored_without_sizes_is_refused():
    fig_script = load_script(SCRIPT, "stable_ratio_figure")
    with pytest.raises(SystemExit, match="score it again"):
        fig_script.pairs_of(_doc(with_sizes=False), "without")
