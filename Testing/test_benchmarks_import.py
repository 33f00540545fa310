"""Every benchmark script still imports against the library (renamed functions broke three)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_script_imports(script):
    module = load_script(script, f"bench_{script.stem}")  # module level only: each script runs under __main__
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
