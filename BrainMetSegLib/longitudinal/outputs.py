"""Writing a comparison: every file staged (verified temporary files), then renamed together.

  longitudinal.json   the request, consistency warnings and overrides, time points, tracks, RANO-BM
  longitudinal.csv    one row per lesion (track) and time point
  rano_bm.csv         one row per follow-up: sums, nadir, changes, categories, reasons
  report.html         table, size curves, montage (self-contained); curves.png, montage.png
  tracks_<k>.<ext>    per time point, its label map with track ids (same id = same lesion)
  segmentations/<k>/  ``segment`` outputs of scans segmented on the way
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..images import format_family
from ..staging import check_writable, commit, stage_bytes, stage_image, stage_text

OUTPUT_FILES = ("longitudinal.json", "longitudinal.csv", "rano_bm.csv", "report.html", "curves.png", "montage.png")


def image_suffix(inputs) -> str:
    """The image format of the outputs: the baseline scan's, NIfTI for folders."""
    return format_family(inputs[0]) if Path(inputs[0]).is_file() else ".nii.gz"


def planned(out: Path, n_timepoints: int, ext: str) -> list[Path]:
    return [out / f for f in OUTPUT_FILES] + [out / f"tracks_{k}{ext}" for k in range(n_timepoints)]


def check_before_work(request, names: list[str]) -> None:
    """Refuse (OutputError) before any work when an output exists (without overwrite) or cannot
    be written; scans to segment get ``segmentations/<name>/``."""
    from ..outputs import check_outputs
    from .sources import is_result_folder

    out, ext = Path(request.output), image_suffix(request.inputs)
    for path in planned(out, len(request.inputs), ext):
        check_writable(path, request.overwrite)
    if not request.labels:
        for path, name in zip(request.inputs, names, strict=True):
            if not is_result_folder(path):
                check_outputs(out / "segmentations" / name, format_family(path), request.overwrite)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["track_id"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else
                             "" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def write_comparison(outcome, overwrite: bool = False) -> Path:
    """Write an :class:`~.series.Outcome` into its request's output folder; returns the folder."""
    from ..outputs import write_result
    from .report import curves_png, html_report, montage_png

    request, result = outcome.request, outcome.result
    out, ext = Path(request.output), image_suffix(request.inputs)
    for k, seg in sorted(outcome.segmented.items()):
        write_result(seg, out / "segmentations" / outcome.timepoints[k].name, format_family(request.inputs[k]),
                     overwrite, inputs=[request.inputs[k]])
    for path in planned(out, len(result.track_maps), ext):
        check_writable(path, overwrite)
    curves, montage = curves_png(result), montage_png(result, outcome.timepoints)
    texts = {"longitudinal.json": json.dumps(outcome.record(), indent=2, default=float) + "\n",
             "longitudinal.csv": _csv(result.table_rows()), "rano_bm.csv": _csv(result.rano_rows()),
             "report.html": html_report(result, curves, montage, outcome.warnings, outcome.forced,
                                        outcome.prior)}
    staged: list[tuple[Path, Path]] = []
    try:
        for name, text in texts.items():
            staged.append((stage_text(text, out / name), out / name))
        for name, data in (("curves.png", curves), ("montage.png", montage)):
            staged.append((stage_bytes(data, out / name), out / name))
        for k, image in enumerate(result.track_maps):
            staged.append((stage_image(image, out / f"tracks_{k}{ext}"), out / f"tracks_{k}{ext}"))
        commit(staged)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return out
