"""Writing a run's outputs: label map, probability map, lesion table (CSV, JSON), run.json.

Every file is written atomically; an existing file is replaced only with ``overwrite``.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
from pathlib import Path

import SimpleITK as sitk

from .errors import OutputError
from .io import check_writable, write_image, write_text
from .lesions import COLUMNS

FORMATS = {"nii.gz": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}


def table_csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else v)
                         for k, v in row.items()})
    return buf.getvalue()


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def planned_paths(outdir: Path, ext: str) -> dict[str, Path]:
    return {
        "labels": outdir / f"lesion_labels{ext}",
        "probability": outdir / f"probability{ext}",
        "table_csv": outdir / "lesions.csv",
        "table_json": outdir / "lesions.json",
        "run": outdir / "run.json",
    }


def check_outputs(outdir: Path, ext: str, overwrite: bool) -> dict[str, Path]:
    """Fail before any work if an output exists (without overwrite) or the folder is not writable."""
    paths = planned_paths(outdir, ext)
    for path in paths.values():
        check_writable(path, overwrite)
    return paths


def write_result(result, outdir: Path, ext: str, overwrite: bool = False) -> dict[str, Path]:
    """Write ``result`` (a :class:`~BrainMetSegLib.pipeline.Result`) into ``outdir``."""
    paths = check_outputs(outdir, ext, overwrite)
    if ext not in FORMATS.values():
        raise OutputError(f"{outdir}: unknown output format {ext!r}.")
    write_image(sitk.Cast(result.labels, sitk.sitkUInt16), paths["labels"], overwrite)
    write_image(sitk.Cast(result.probability, sitk.sitkFloat32), paths["probability"], overwrite)
    write_text(table_csv(result.table), paths["table_csv"], overwrite)
    write_text(json.dumps(_json_safe({"case": result.case_id, "lesions": result.table}), indent=2) + "\n",
               paths["table_json"], overwrite)
    run = {"case": result.case_id, **result.provenance, "timings_s": result.timings_s,
           "lesions": result.n_lesions, "outputs": {k: p.name for k, p in paths.items()}}
    write_text(json.dumps(_json_safe(run), indent=2) + "\n", paths["run"], overwrite)
    return paths
