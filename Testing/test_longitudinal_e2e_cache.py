"""benchmarks/longitudinal_e2e.py: a cache segmented with one test-time mirroring is refused by a
run that asks another (its scans would be scored as the other setting's)."""

from __future__ import annotations

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


def test_a_cached_scan_with_the_asked_mirroring_is_reused(e2e, tmp_path):
    e2e._check_cached_mirror(_run_json(tmp_path, {"mirror": {"mode": "lr"}}), "lr")
    e2e._check_cached_mirror(_run_json(tmp_path, {}), "none")  # run.json from before mirroring was recorded


@pytest.mark.parametrize(("cached", "asked"), [("none", "lr"), ("lr", "none"), ("all", "lr")])
def test_a_cached_scan_with_another_mirroring_is_refused(e2e, tmp_path, cached, asked):
    with pytest.raises(SystemExit, match=f"--mirror {cached}, this run asks {asked}"):
        e2e._check_cached_mirror(_run_json(tmp_path, {"mirror": {"mode": cached}}), asked)
