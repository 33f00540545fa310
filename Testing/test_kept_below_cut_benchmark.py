"""benchmarks/kept_below_cut.py: only lesions under the cut are listed, with the true lesions they
touch and the share of each one's volume they cover."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kept_below_cut.py"


def test_rows_name_the_truth_a_kept_lesion_covers():
    bench = load_script(SCRIPT, "bench_kept_below_cut")
    labels = np.zeros((10, 10, 10), np.uint16)
    truth = np.zeros_like(labels)
    truth[2:6, 2:6, 2:6] = 3                 # 64 voxels, half of it drawn
    labels[2:4, 2:6, 2:6] = 1
    labels[8:10, 8:10, 8:10] = 2             # false, under the cut
    labels[6:8, 0:2, 0:2] = 4                # above the cut: not listed
    table = [{"lesion_id": 1, "axial_longest_diameter_mm": 12.0, "lesion_probability": 0.12},
             {"lesion_id": 2, "axial_longest_diameter_mm": 11.0, "lesion_probability": 0.49},
             {"lesion_id": 4, "axial_longest_diameter_mm": 10.5, "lesion_probability": 0.5}]
    result = SimpleNamespace(labels=sitk.GetImageFromArray(labels), table=table)
    rows = bench.kept_rows(result, truth, 0.5, "c")
    assert [(r["lesion"], r["true_ids"], r["true_volume_covered"]) for r in rows] == [(1, [3], [0.5]), (2, [], [])]
