"""The review panel's text (BrainMetSegLib.viewer.panel_text): pure Python, no VTK, no trame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from BrainMetSegLib.viewer.lesion_rows import LesionRow
from BrainMetSegLib.viewer.panel_text import format_number, lesion_row_text, number_or_none


def test_numbers_formatted_and_read_back():
    assert format_number(12.345, 1) == "12.3"
    assert format_number(float("nan"), 1) == ""  # not measured
    assert format_number(None, 2) == ""
    assert format_number("n/a", 2) == "n/a"
    assert number_or_none("0.5") == 0.5
    assert number_or_none("") is None and number_or_none(None) is None


def test_measured_and_unmeasured_rows():
    measured = LesionRow(2, "Metastasis 2", "#ff0000", True, {
        "volume_mm3": 523.64, "longest_diameter_mm": 11.06, "axial_longest_diameter_mm": 10.44,
        "axial_perpendicular_diameter_mm": 8.91, "rano_bm_measurable": True, "max_probability": 0.987,
        "lesion_probability": float("nan")})
    row = lesion_row_text(measured)
    assert row["volume"] == "523.6" and row["longest"] == "11.1"
    assert row["rano"] == "10.4 × 8.9" and row["measurable"] == "yes"
    assert row["pmax"] == "0.99" and row["plesion"] == ""  # no scorer: empty, not "nan"
    drawn = lesion_row_text(LesionRow(5, "Metastasis 5", "#00ff00", False, {}))
    assert (drawn["volume"], drawn["rano"], drawn["measurable"]) == ("", "", "")
    assert drawn["lesion_id"] == 5 and drawn["visible"] is False


def test_panel_text_loads_no_vtk():
    code = ("import sys; import BrainMetSegLib.viewer.panel_text, BrainMetSegLib.viewer.display; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('vtk', 'vtkmodules', 'slicer', 'trame')]; "
            "assert not loaded, loaded")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
