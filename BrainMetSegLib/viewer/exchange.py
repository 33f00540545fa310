"""DICOM in the viewer: the objects of ``segment --dicom`` to download, and a reviewed version
exported to DICOM SEG / SR / RTSTRUCT with the library's :func:`~BrainMetSegLib.dicom.export_dicom`.

The export of a review goes into that version's own folder (``review_NNN/``), never beside
or over the original objects. A DICOM SEG numbers its segments 1..N without gaps, while a
review keeps the ids the reviewer saw (an erased lesion leaves a gap), so the export
renumbers in id order and writes the correspondence to ``dicom_export.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, OutputError
from ..staging import write_text
from .result import ResultFolder

# The names ``segment --dicom`` writes (BrainMetSegLib.dicom.OUTPUT_NAMES, repeated so that
# listing them does not import highdicom).
DICOM_NAMES = {"seg": "lesions_seg.dcm", "sr": "lesions_sr.dcm", "rtstruct": "lesions_rtstruct.dcm"}
EXPORT_RECORD = "dicom_export.json"


def dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM objects (SEG, SR, RTSTRUCT, in that order) present in ``folder``."""
    return [Path(folder) / name for name in DICOM_NAMES.values() if (Path(folder) / name).is_file()]


def reference_series(result: ResultFolder) -> Path | None:
    """The CE-T1's DICOM series folder when the result was made from one (else None)."""
    return result.image_path if result.image_path.is_dir() else None


def model_identity(run: dict, version_name: str):
    """The model of run.json, with the review version recorded among its parameters (the
    objects then say the segments were corrected by hand after the model)."""
    from ..dicom import ModelIdentity, operating_parameters, weights_sha256

    model = run.get("model") or {}
    params = operating_parameters(run.get("settings") or {})
    params["review"] = f"{version_name}: corrected in brainmetseg view"
    return ModelIdentity(str(model.get("name", "unknown")), str(model.get("version", "unknown")),
                         weights_sha256(model), params)


def export_review_dicom(version: str | Path, reference: str | Path, run: dict,
                        kinds: tuple[str, ...] = ("seg", "sr", "rtstruct")) -> dict[str, Path]:
    """Export the reviewed version in ``version`` (review_NNN/) to DICOM, into that folder.

    reference: the CE-T1's DICOM series folder (the review's label map is on its lattice).
    Returns ``{"dicom_seg": path, ...}`` (empty when the review has no lesion).
    A version already exported is refused (an :class:`OutputError`): objects are never replaced.
    """
    from ..dicom import export_dicom

    version = Path(version)
    if dicom_files(version) or (version / EXPORT_RECORD).exists():
        raise OutputError(f"{version}: already exported to DICOM (objects are never replaced); "
                          "save a new version to export again.")
    record_path = version / "review.json"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        labels_path = version / record["outputs"]["labels"]
        table = json.loads((version / record["outputs"]["table_json"]).read_text(encoding="utf-8"))["lesions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{record_path}: not a saved review version ({exc}).") from None
    try:
        labels = sitk.ReadImage(str(labels_path))
    except RuntimeError:
        raise InputError(f"{labels_path}: cannot read the reviewed label map.") from None
    array = sitk.GetArrayFromImage(labels).astype(np.int64)
    ids = sorted(int(r["lesion_id"]) for r in table)
    if ids != [int(i) for i in np.unique(array) if i]:
        raise InputError(f"{labels_path}: lesion ids differ from its table {version / 'lesions.json'}.")
    lut = np.zeros(max(ids, default=0) + 1, np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1)
    renumbered = sitk.GetImageFromArray(lut[array])
    renumbered.CopyInformation(labels)
    rows = [{**r, "lesion_id": int(lut[int(r["lesion_id"])])} for r in table]
    paths = export_dicom(renumbered, rows, reference, version, kinds, model_identity(run, version.name),
                         labels_name=str(labels_path))
    write_text(json.dumps({
        "reference_series": str(reference),
        "files": {k: p.name for k, p in paths.items()},
        "segment_number_to_lesion_id": {str(n): lesion_id for n, lesion_id in enumerate(ids, start=1)},
    }, indent=2) + "\n", version / EXPORT_RECORD)
    return paths
