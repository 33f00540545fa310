"""What the review's side panel shows, as text: the lesion rows with their measures
formatted, run.json as (section, key, value) rows, numbers typed into the panel read back.

Pure Python (no trame, no VTK): the app puts these values into trame state.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .result import ResultFolder

if TYPE_CHECKING:  # lesion_rows loads the scene layer (VTK); this module must not
    from .lesion_rows import LesionRow


def run_info(result: ResultFolder) -> list[dict]:
    """run.json as (section, key, value) rows for the side panel."""
    run = result.run
    model = run.get("model") or {}
    settings = run.get("settings") or {}
    rows = [("input", "CE-T1", str(result.image_path)),
            ("input", "case", str(run.get("case", ""))),
            ("model", "name", f"{model.get('name', '?')} {model.get('version', '')}".strip()),
            ("model", "trained", str(model.get("trained", "?"))),
            ("model", "sha256", str(model.get("sha256", ""))[:16])]
    ran = model.get("weights_run") if isinstance(model.get("weights_run"), dict) else None
    if ran:  # a package with thick-slice weights: which ran, and why
        rows.append(("model", "weights", f"{ran.get('file', '?')} ({ran.get('why', '')})"))
    for key in (*result.operating_point.as_settings(), "brain_mask", "device", "precision"):
        if key in settings:
            rows.append(("settings", key, str(settings[key])))
    if "device" in run:
        rows.append(("settings", "device used", str(run["device"])))
    used = ((run.get("inference_run") or {}).get("precision") or {})
    if isinstance(used, dict) and used.get("reason"):
        rows.append(("settings", "precision used", str(used["reason"])))
    for stage, seconds in (run.get("timings_s") or {}).items():
        rows.append(("timings", stage, f"{float(seconds):.1f} s"))
    for warning in result.warnings:
        rows.append(("warnings", "", warning))
    version = (run.get("library") or {}).get("version")
    if version:
        rows.append(("library", "BrainMetSegLib", str(version)))
    return [{"section": s, "key": k, "value": v} for s, k, v in rows]


def lesion_row_text(row: LesionRow) -> dict:
    """One row of the panel's lesion table: measures in mm / mm³ with one decimal,
    probabilities with two; empty where not measured (a lesion drawn since)."""
    m = row.measures
    return {
        "lesion_id": row.lesion_id, "name": row.name, "color": row.color_hex, "visible": row.visible,
        "volume": format_number(m.get("volume_mm3"), 1), "longest": format_number(m.get("longest_diameter_mm"), 1),
        "rano": (f"{format_number(m.get('axial_longest_diameter_mm'), 1)} × "
                 f"{format_number(m.get('axial_perpendicular_diameter_mm'), 1)}") if m else "",
        "measurable": "yes" if m.get("rano_bm_measurable") else ("no" if m else ""),
        "pmax": format_number(m.get("max_probability"), 2),
        "plesion": format_number(m.get("lesion_probability"), 2),  # calibrated; empty without a scorer
    }


def number_or_none(value) -> float | None:
    """``value`` as a float; None when it is no number (an empty or half-typed field)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def format_number(value, digits: int) -> str:
    """``value`` with ``digits`` decimals; "" for None or NaN, the text itself when it is no number."""
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else ""  # NaN: not measured
