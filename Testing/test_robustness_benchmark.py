"""benchmarks/robustness.py caches each result per model: a result of another model (another
version, or other weights or candidate scorer under the same version) is never reused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.synth.dataset import case_paths
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"


@pytest.fixture(scope="module")
def robustness():
    return load_script(SCRIPT, "bench_robustness_cache")


@dataclass
class Card:
    name: str = "demo"
    version: str = "2.2.0"
    sha256: str = "a" * 64
    candidate_scorer: dict = field(default_factory=lambda: {"file": "scorer.json", "sha256": "b" * 64})


class CountingSegmenter:
    """Finds the one phantom lesion (any voxel > 500 on the scan); counts its runs."""

    def __init__(self, card: Card, mirror: str = "none", precision: str = "auto", backend: str = "auto",
                 grid_shifts: int = 1):
        self.package = SimpleNamespace(card=card)
        self.config = SimpleNamespace(mirror=mirror, precision=precision, backend=backend, grid_shifts=grid_shifts)
        self.runs = 0

    def run(self, path: str):
        self.runs += 1
        scan = sitk.ReadImage(path)
        labels = sitk.Cast(scan > 500, sitk.sitkUInt32)
        return SimpleNamespace(labels=labels, warnings=[])


def _phantom(folder: Path, cid: str) -> None:
    paths = case_paths(folder, cid)
    image = np.full((24, 24, 24), 100, np.float32)
    truth = np.zeros(image.shape, np.uint32)
    truth[10:14, 10:14, 10:14] = 1
    image[truth > 0] = 1000
    brain = np.zeros(image.shape, np.uint8)
    brain[3:21, 3:21, 3:21] = 1
    for key, arr in (("image", image), ("instances", truth), ("brain", brain)):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(paths[key]))


def test_cached_results_are_kept_per_model(robustness, tmp_path):
    _phantom(tmp_path / "phantoms", "synth_000")
    a = CountingSegmenter(Card())
    row = robustness.run_case(a, tmp_path / "phantoms", "synth_000", "original", tmp_path)
    assert (row["gt_lesions"], row["detected"], row["fp"]) == (1, 1, 0) and a.runs == 1
    assert robustness.run_case(a, tmp_path / "phantoms", "synth_000", "original", tmp_path) == row
    assert a.runs == 1  # the same model: cached
    for other in (Card(version="2.1.0", candidate_scorer={}), Card(sha256="c" * 64),
                  Card(candidate_scorer={"file": "scorer.json", "sha256": "d" * 64})):
        b = CountingSegmenter(other)
        robustness.run_case(b, tmp_path / "phantoms", "synth_000", "original", tmp_path)
        assert b.runs == 1, other  # another model (version, weights or scorer): run again
    for options in ({"mirror": "lr"}, {"precision": "fp32"}, {"backend": "torch"}, {"grid_shifts": 4}):
        c = CountingSegmenter(Card(), **options)
        robustness.run_case(c, tmp_path / "phantoms", "synth_000", "original", tmp_path)
        assert c.runs == 1, options  # the same model run another way: run again, cached apart
    keys = {p.name for p in (tmp_path / "results").iterdir()}
    assert len(keys) == 8 and robustness.model_key(Card()) in keys
    assert robustness.model_key(Card(), "lr", "fp32/auto").endswith("-mirrorlr-fp32-auto")
    assert robustness.model_key(Card(), "lr", "fp32/auto", 4).endswith("-mirrorlr-grids4-fp32-auto")
    from BrainMetSegLib.candidate_stage import OUTSIDE_BRAIN_MAX_FRACTION

    # results made before the outside-the-brain rule (or with another cut) are another key
    assert f"-out{OUTSIDE_BRAIN_MAX_FRACTION:g}-" in robustness.model_key(Card())


def test_results_with_another_deepbet_cube_are_another_key(robustness, monkeypatch):
    from BrainMetSegLib import skullstrip

    key = robustness.model_key(Card())
    assert key.endswith(f"-deepbet{skullstrip.DEEPBET_GRID}-{skullstrip.DEEPBET_GRID_THICK}")
    monkeypatch.setattr(skullstrip, "DEEPBET_GRID_THICK", skullstrip.DEEPBET_GRID)  # with_deepbet_grid.py 224
    assert robustness.model_key(Card()) != key


def test_a_row_written_by_another_model_is_not_reused(robustness, tmp_path):
    key = robustness.model_key(Card())
    cache = robustness.cache_path(tmp_path, key, "original", "synth_000")
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"case": "synth_000", "model": "demo-2.1.0-aaaaaaaaaaaa"}))  # copied in by hand
    assert robustness.cached_row(tmp_path, key, "original", "synth_000") is None
    cache.write_text(json.dumps({"case": "synth_000", "model": key}))
    assert robustness.cached_row(tmp_path, key, "original", "synth_000") == {"case": "synth_000", "model": key}
