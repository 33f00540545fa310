"""Write a lesion label map as DICOM SEG, SR and RTSTRUCT next to a reference series.

    from BrainMetSegLib.dicom import export_dicom, ModelIdentity
    paths = export_dicom(labels, table, "ce_t1_dicom/", "out/", ("seg", "sr", "rtstruct"),
                         ModelIdentity("brainmetseg-demo", "1.1.0"))

The label map holds lesion ids 1..N (0 = background) on the CE-T1's grid; ``table`` is its
lesion table (:func:`BrainMetSegLib.lesions.lesion_table`). Every file is written to a
temporary name and renamed; existing files are replaced only with ``overwrite``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from ..errors import InputError, OutputError
from ..lesions import LesionTableRow
from ..staging import check_writable, default_file_mode
from .identity import ModelIdentity
from .reference import ReferenceSeries, check_lattice, labels_on_reference, read_reference_series
from .rtstruct import build_rtstruct
from .seg import build_seg
from .sr import build_no_findings_sr, build_sr

DICOM_KINDS = ("seg", "sr", "rtstruct")
OUTPUT_NAMES = {"seg": "lesions_seg.dcm", "sr": "lesions_sr.dcm", "rtstruct": "lesions_rtstruct.dcm"}


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"seg,sr"`` -> ``("seg", "sr")``; ``"all"`` -> every kind. The SR refers to the SEG's
    segments, so ``sr`` needs ``seg``."""
    kinds = DICOM_KINDS if text.strip().lower() == "all" else tuple(
        k.strip().lower() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in DICOM_KINDS]
    if unknown or not kinds:
        raise InputError(f"--dicom {text!r}: choose from {', '.join(DICOM_KINDS)} (comma-separated) or all.")
    if "sr" in kinds and "seg" not in kinds:
        raise InputError("--dicom sr needs seg too: the report refers to the SEG's segments.")
    return tuple(k for k in DICOM_KINDS if k in kinds)


def planned_dicom_paths(outdir: str | os.PathLike, kinds) -> dict[str, Path]:
    return {f"dicom_{k}": Path(outdir) / OUTPUT_NAMES[k] for k in kinds}


def write_dataset(ds: pydicom.Dataset, path: Path, overwrite: bool = False) -> Path:
    """Write a DICOM file atomically (temporary file in the same folder, then rename)."""
    check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the DICOM file ({exc}).") from None
    return path


def export_dicom(labels: sitk.Image, table: list[LesionTableRow],
                 reference: ReferenceSeries | str | os.PathLike | list[str | os.PathLike],
                 outdir: str | os.PathLike, kinds=DICOM_KINDS, model: ModelIdentity | None = None,
                 overwrite: bool = False, labels_name: str = "label map") -> dict[str, Path]:
    """Write the requested objects (``kinds`` from :data:`DICOM_KINDS`) into ``outdir``.

    labels: lesion ids 1..N on a grid that is the reference series' voxel lattice.
    reference: the series, its folder, or the list of its files.
    Returns ``{"dicom_seg": path, ...}``. With no lesion, a SEG (needs a segment) and an
    RTSTRUCT (needs a ROI) are not written; an asked-for SR is, as a "no findings" report
    (:func:`.sr.build_no_findings_sr`), so ``{"dicom_sr": path}`` or ``{}``.
    """
    kinds = parse_kinds(kinds if isinstance(kinds, str) else ",".join(kinds))
    model = model or ModelIdentity("unknown", "unknown")
    paths = planned_dicom_paths(outdir, kinds)
    for path in paths.values():
        check_writable(path, overwrite)
    if not isinstance(reference, ReferenceSeries):
        reference = read_reference_series(reference)
    frames = labels_on_reference(labels, reference, labels_name)
    ids = sorted(int(r["lesion_id"]) for r in table)
    if ids != list(range(1, int(frames.max()) + 1)) or not np.array_equal(np.unique(frames)[1:], ids):
        raise InputError(f"{labels_name}: lesion ids of the label map ({int(frames.max())} lesions) "
                         f"and the lesion table ({len(ids)} rows) disagree; re-measure the label map.")
    builders = {
        "seg": lambda: build_seg(reference, frames, model),
        "sr": lambda: build_sr(reference, objects["dicom_seg"], frames, table, model),
        "rtstruct": lambda: build_rtstruct(reference, frames, model),
    }
    if frames.max() == 0:  # nothing to segment or contour; the report says "none found"
        kinds = tuple(k for k in kinds if k == "sr")
        builders["sr"] = lambda: build_no_findings_sr(reference, model)
    objects = {}
    for kind in kinds:
        try:
            objects[f"dicom_{kind}"] = builders[kind]()
        except (ValueError, AttributeError, TypeError) as exc:
            # highdicom checks the source attributes it copies (e.g. a malformed value)
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise InputError(f"{reference.files[0]}: cannot build the DICOM {kind.upper()} from this "
                             f"series ({detail}).") from None
    return {key: write_dataset(ds, paths[key], overwrite) for key, ds in objects.items()}


@dataclass
class DicomExport:
    """A planned export of one case's result: which objects, which reference, where.

    :meth:`check` fails early (before inference) on a bad reference or an existing output;
    :meth:`write` exports a :class:`~BrainMetSegLib.pipeline_types.Result`.
    """

    kinds: tuple[str, ...]
    reference_folder: Path
    outdir: Path
    overwrite: bool = False
    image_path: str | None = None  # the CE-T1 file whose grid must match (header check)
    reference: ReferenceSeries | None = field(default=None, repr=False)

    def check(self) -> None:
        for path in planned_dicom_paths(self.outdir, self.kinds).values():
            check_writable(path, self.overwrite)
        self.reference = read_reference_series(self.reference_folder)
        if self.image_path and Path(self.image_path).is_file():
            header = sitk.ImageFileReader()
            header.SetFileName(str(self.image_path))
            try:
                header.ReadImageInformation()
            except RuntimeError:
                return  # unreadable image: the pipeline reports it with its own message
            if header.GetDimension() == 3:
                check_lattice(header, self.reference, str(self.image_path))

    def write(self, result) -> dict[str, Path]:
        if self.reference is None:
            self.check()
        return export_dicom(result.labels, result.table, self.reference, self.outdir, self.kinds,
                            ModelIdentity.from_provenance(result.provenance), self.overwrite,
                            labels_name=str(self.image_path or "label map"))


def plan_export(kinds_text: str | None, reference_folder: str | None, image_path: str,
                outdir: str | os.PathLike, overwrite: bool = False) -> DicomExport | None:
    """The export ``--dicom KINDS [--dicom-reference FOLDER]`` asks for, or None.

    The reference is ``reference_folder`` or else the CE-T1 itself when it is a DICOM
    series folder; a CE-T1 file without a reference is an :class:`InputError`.
    """
    if not kinds_text:
        if reference_folder:
            raise InputError("--dicom-reference goes with --dicom seg,sr,rtstruct (which objects to write).")
        return None
    kinds = parse_kinds(kinds_text)
    if reference_folder:
        folder = Path(reference_folder)
    elif Path(image_path).is_dir():
        folder = Path(image_path)
    else:
        raise InputError(f"{image_path}: --dicom needs the CE-T1's DICOM series: give the series "
                         "folder as input or name it with --dicom-reference FOLDER.")
    return DicomExport(kinds, folder, Path(outdir), overwrite,
                       None if Path(image_path).is_dir() else image_path)
