"""The issue-24 probes of single lesions: benchmarks/robustness_sample_lesions.py (where a truth
lesion was lost: contrast left, network probability, candidate) and
benchmarks/robustness_false_outside.py (which false lesions count as outside the brain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from BrainMetSegLib.lesions import Frame
from conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    return load_script(BENCH / f"{name}.py", f"bench_{name}_probe")


@pytest.fixture(scope="module")
def sample_lesions():
    return _load("robustness_sample_lesions")


@pytest.fixture(scope="module")
def false_outside():
    return _load("robustness_false_outside")


def _volume():
    """20^3 1 mm grid: brain everywhere but a border; lesion 1 bright (a candidate, reported),
    lesion 2 faint (the network below the candidate threshold, no candidate)."""
    shape = (20, 20, 20)
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 5.0, shape)
    brain = np.zeros(shape, bool)
    brain[2:18, 2:18, 2:18] = True
    truth = np.zeros(shape, np.int32)
    truth[5:8, 5:8, 5:8] = 1
    truth[12:14, 12:14, 12:14] = 2
    values[truth == 1] += 60.0
    values[truth == 2] += 10.0
    prob = np.zeros(shape, np.float32)
    prob[truth == 1] = 0.99
    prob[truth == 2] = 0.3
    candidates = np.where(truth == 1, 1, 0)
    candidates[15, 15, 15] = 2  # a false candidate elsewhere
    return truth, values, brain, prob, candidates


def test_lesion_rows_say_where_each_lesion_was_lost(sample_lesions):
    truth, values, brain, prob, candidates = _volume()
    reported = (candidates == 1).astype(np.int32)
    rows = sample_lesions.lesion_rows(truth, Frame.from_spacing((1.0, 1.0, 2.0)), values, brain, prob, candidates,
                                      np.array([0.97, 0.2]), np.array([27.0, 1.0]), reported)
    first, second = rows
    assert [r["lesion"] for r in rows] == [1, 2]
    assert first["volume_mm3"] == 54.0 and second["volume_mm3"] == 16.0  # voxels x 2 mm^3
    assert first["z_extent_mm"] == 6.0 and second["z_extent_mm"] == 4.0  # 3 and 2 slices of 2 mm
    assert first["found"] and not second["found"]
    assert first["candidates"] == [{"id": 1, "core_mm3": 27.0, "lesion_probability": 0.97}]
    assert second["candidates"] == []  # below the candidate threshold: the scorer never saw it
    assert first["network_max_p"] == pytest.approx(0.99) and second["network_max_p"] == pytest.approx(0.3)
    # contrast in SDs of the brain: the bright lesion far above the faint one, both positive
    assert first["contrast"] > 3 * second["contrast"] > 0
    assert first["peak_contrast"] >= first["contrast"]


def test_false_outside_counts_as_the_benchmark_does(false_outside):
    shape = (16, 16, 16)
    truth = np.zeros(shape, np.int32)
    truth[4:6, 4:6, 4:6] = 1
    brain = np.zeros(shape, bool)
    brain[2:12, 2:12, 2:12] = True
    pred = np.zeros(shape, np.int32)
    pred[4:7, 4:7, 4:7] = 1      # true: touches the truth lesion
    pred[8:10, 8:10, 8:10] = 2   # false, inside the brain
    pred[13:15, 5:7, 5:7] = 3    # false, wholly outside: 2-3 voxels beyond the mask
    pred[11:13, 9:11, 9:11] = 4  # false, half in half out: not "outside" (more than half is)
    rows = false_outside.false_outside(pred, truth, brain)
    assert [r["id"] for r in rows] == [3]
    (row,) = rows
    assert row["voxels"] == 8 and row["outside_phantom_brain"] == 1.0
    assert row["mm_outside_phantom_brain"] == pytest.approx(2.5)  # slices 13, 14: 2 and 3 voxels out
    assert row["kji"] == pytest.approx([13.5, 5.5, 5.5])


def test_holding_candidate_is_the_one_with_most_of_the_lesion(false_outside):
    candidates = np.zeros((4, 4, 4), np.int32)
    candidates[0, 0, :3] = 2
    candidates[0, 0, 3] = 5
    lesion = np.zeros_like(candidates, bool)
    lesion[0, 0, 1:] = True
    assert false_outside.holding_candidate(candidates, lesion) == 2
    assert false_outside.holding_candidate(candidates, np.zeros_like(lesion)) == 0


@pytest.fixture(scope="module")
def misses():
    return _load("thick_slice_misses")


def test_loss_class_puts_each_lesion_where_it_was_lost(misses):
    assert misses.loss_class([False, True], 0.99, 0.5, 0.1) == "found"
    assert misses.loss_class([False], 0.99, 0.5, 0.1) == "below_cut"  # a candidate the scorer turned down
    assert misses.loss_class([], 0.3, 0.5, 0.1) == "network_weak"     # no candidate, the network not silent
    assert misses.loss_class([], 0.05, 0.5, 0.1) == "network_none"
    rows = [{"diameter_mm": d, "class": c} for d, c in ((2.0, "network_none"), (5.0, "found"), (12.0, "below_cut"))]
    counts = misses.summary(rows)
    assert counts["all"] == {"lesions": 3, "found": 1, "below_cut": 1, "network_weak": 0, "network_none": 1}
    assert counts["< 3 mm"]["network_none"] == 1 and counts[">= 10 mm"]["below_cut"] == 1


def test_near_confounders_names_the_look_alike_a_false_lesion_lies_on(false_outside):
    lesion = np.zeros((12, 12, 12), bool)
    lesion[5:7, 5:7, 5:7] = True
    sinus = np.zeros_like(lesion)
    sinus[5:7, 5:7, 8] = True      # 2 voxels from the lesion's column 6, 3 from its column 5
    choroid = np.zeros_like(lesion)
    choroid[0, 0, 0] = True        # far away
    near = false_outside.near_confounders(lesion, {"vessels": sinus, "choroid": choroid,
                                                   "dura": np.zeros_like(lesion)}, 3)
    assert near == {"vessels": 1.0, "choroid": 0.0, "dura": 0.0}
    assert false_outside.near_confounders(lesion, {"vessels": sinus}, 2)["vessels"] == 0.5  # column 6 only
    assert false_outside.near_confounders(lesion, {"vessels": sinus}, 1)["vessels"] == 0.0
