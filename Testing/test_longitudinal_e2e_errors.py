"""benchmarks/longitudinal_e2e_errors.py: the lesions a candidate stage kept below its cut are
listed with RANO-BM's axial measurability and whether they lie on a true lesion; lesions at or
above the cut, and runs without a candidate stage, are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "longitudinal_e2e_errors.py"


@pytest.fixture(scope="module")
def errors():
    return load_script(SCRIPT, "bench_longitudinal_e2e_errors")


def _write(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint16)), str(path))


def _row(lesion_id, probability, longest, perpendicular, slices, longest_3d):
    return {"lesion_id": lesion_id, "lesion_probability": probability, "longest_diameter_mm": longest_3d,
            "axial_longest_diameter_mm": longest, "axial_perpendicular_diameter_mm": perpendicular,
            "axial_slices": slices}


def _scan(cache: Path, name: str, stage: dict | None, rows: list[dict], labels: np.ndarray) -> None:
    folder = cache / "seg" / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"settings": {"candidate_stage": stage} if stage else {}}))
    (folder / "lesions.json").write_text(json.dumps({"lesions": rows}))
    _write(labels, folder / "lesion_labels.nii.gz")


def test_kept_below_cut_lists_only_lesions_under_the_cut_with_measurability_and_truth(errors, tmp_path):
    labels = np.zeros((12, 12, 12))
    labels[1:3, 1:3, 1:3] = 1       # on the true lesion
    labels[6:11, 6:8, 6:8] = 2      # elongated in z, no true lesion there
    labels[1:3, 8:10, 8:10] = 3     # above the cut: a lesion by the cut itself
    truth = np.zeros((12, 12, 12))
    truth[2:4, 2:4, 2:4] = 7
    _write(truth, tmp_path / "phantoms" / "instancesTr" / "synth_000.nii.gz")
    rows = [_row(1, 0.2, 12.0, 8.0, 2, 13.0), _row(2, 0.3, 4.5, 2.0, 11, 18.0), _row(3, 0.9, 3.0, 2.0, 2, 3.5)]
    _scan(tmp_path, "synth_000_t0", {"cut": 0.5}, rows, labels)
    kept = errors.kept_below_cut(tmp_path)
    assert [(r["lesion_id"], r["rano_measurable"], r["on_a_true_lesion"]) for r in kept] == [
        (1, True, True), (2, False, False)]
    assert kept[1]["longest_3d_mm"] == 18.0 and kept[1]["axial_slices"] == 11 and kept[1]["cut"] == 0.5


def test_a_run_without_a_candidate_stage_has_nothing_kept_below_a_cut(errors, tmp_path):
    labels = np.zeros((6, 6, 6))
    labels[1:3, 1:3, 1:3] = 1
    _write(np.zeros((6, 6, 6)), tmp_path / "phantoms" / "instancesTr" / "synth_000.nii.gz")
    _scan(tmp_path, "synth_000_t0", None, [_row(1, 0.2, 12.0, 8.0, 2, 13.0)], labels)
    assert errors.kept_below_cut(tmp_path) == []
