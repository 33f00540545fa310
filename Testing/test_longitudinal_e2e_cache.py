"""benchmarks/longitudinal_e2e.py: a cache segmented with one test-time mirroring, or synthesised
with other follow-up options, is refused by a run that asks another (its scans would be scored as
the other setting's); the stable ratios by baseline size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "longitudinal_e2e.py"


@pytest.fixture(scope="module")
def e2e():
    return load_script(SCRIPT, "bench_longitudinal_e2e")


def _run_json(tmp_path: Path, inference_run: dict) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"inference_run": inference_run}))
    return path


def _inference_args(mirror="none", grid_shifts=1):
    return argparse.Namespace(mirror=mirror, grid_shifts=grid_shifts)


def test_a_cached_scan_with_the_asked_mirroring_is_reused(e2e, tmp_path):
    e2e._check_cached_inference(_run_json(tmp_path, {"mirror": {"mode": "lr"}}), _inference_args("lr"))
    # run.json from before mirroring / grid shifts were recorded
    e2e._check_cached_inference(_run_json(tmp_path, {}), _inference_args())


@pytest.mark.parametrize(("cached", "asked"), [("none", "lr"), ("lr", "none"), ("all", "lr")])
def test_a_cached_scan_with_another_mirroring_is_refused(e2e, tmp_path, cached, asked):
    with pytest.raises(SystemExit, match=f"--mirror {cached}, this run asks {asked}"):
        e2e._check_cached_inference(_run_json(tmp_path, {"mirror": {"mode": cached}}), _inference_args(asked))


@pytest.mark.parametrize(("cached", "asked"), [(1, 4), (4, 1), (4, 8)])
def test_a_cached_scan_with_other_grid_shifts_is_refused(e2e, tmp_path, cached, asked):
    inference = {"grid_shifts": {"grids": cached}} if cached > 1 else {}
    with pytest.raises(SystemExit, match=f"--grid-shifts {cached}, this run asks {asked}"):
        e2e._check_cached_inference(_run_json(tmp_path, inference), _inference_args(grid_shifts=asked))
    e2e._check_cached_inference(_run_json(tmp_path, inference), _inference_args(grid_shifts=cached))


def _phantoms(tmp_path: Path, options: dict) -> Path:
    (tmp_path / "followups").mkdir(parents=True)
    (tmp_path / "followups" / "synth_000_fu1.json").write_text(json.dumps({"followup_options": options}))
    return tmp_path


def _args(scenario="auto", motion=None, interpolation="linear"):
    from types import SimpleNamespace

    return SimpleNamespace(scenario=scenario, motion=motion, interpolation=interpolation)


def test_phantoms_made_with_other_followup_options_are_refused(e2e, tmp_path):
    made = {"scenario": "repeat", "max_rotation_deg": 0.0, "max_shift_mm": 0.0, "new_diameter_mm": [3.0, 12.0]}
    phantoms = _phantoms(tmp_path, made)
    e2e._check_cached_followups(phantoms, _args("repeat", [0.0, 0.0]))
    for args in (_args(), _args("repeat"), _args("stable", [0.0, 0.0]), _args("repeat", [0.0, 1.0]),
                 _args("repeat", [0.0, 0.0], "cubic")):
        with pytest.raises(SystemExit, match="use another --cache"):
            e2e._check_cached_followups(phantoms, args)
    assert e2e.synth_followup_options(_args("repeat", [0.0, 0.0])) == [
        "--followup-scenario", "repeat", "--followup-motion", "0.0", "0.0"]
    assert e2e.synth_followup_options(_args()) == []
    assert e2e.synth_followup_options(_args(interpolation="cubic")) == ["--followup-interpolation", "cubic"]


def test_stable_ratios_by_baseline_size(e2e):
    rows = [{"with": {"stable_baseline_analytic_mm": [4.0, 6.0, 12.0, 9.9],
                      "stable_ratios_vs_analytic": [1.5, 1.1, 0.98, 0.9]}},
            {"with": {"stable_ratios_vs_analytic": [2.0]}}]  # scored before sizes were recorded: left out
    out = e2e._stable_by_size(rows, "with")
    assert out["<5 mm"]["n"] == 1 and out["5-10 mm"] == {"n": 2, "median": 1.0, "mean": 1.0, "sd": 0.1}
    assert out[">=10 mm"]["median"] == 0.98
