"""Reading a DICOM series folder: one series, every DICOM file in it intact.

Volumes are ``SimpleITK.Image`` objects in LPS physical space (see :mod:`BrainMetSegLib.images`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .filecheck import FileProblem, check_folder_entries

#: Largest difference of a direction cosine between two slices of one volume (unitless).
DIRECTION_TOL = 1e-4
#: Largest relative difference of two slices' pixel spacings.
SPACING_RTOL = 1e-6
#: A slice's geometry as :func:`inconsistent_slice` compares it, with each key's DICOM keyword.
HEADER_KEYWORDS = {"orientation": "ImageOrientationPatient", "rows": "Rows", "columns": "Columns",
                   "pixel_spacing": "PixelSpacing", "frame_of_reference": "FrameOfReferenceUID"}
_ITK_TAGS = {"orientation": "0020|0037", "rows": "0028|0010", "columns": "0028|0011",
             "pixel_spacing": "0028|0030", "frame_of_reference": "0020|0052"}


def slice_header(values: dict) -> dict:
    """A slice's geometry (:data:`HEADER_KEYWORDS` keys) from raw values (DICOM strings with ``\\``
    between numbers, pydicom values, or None where absent), in one form whoever read them."""
    def numbers(v):
        if v is None:
            return None
        parts = str(v).split("\\") if isinstance(v, str) else list(v)
        try:
            return tuple(float(x) for x in parts if str(x).strip())
        except (TypeError, ValueError):
            return None  # not numbers: compared as absent (ITK read the image as it could)

    def text(v):
        return None if v is None else str(v).strip().rstrip("\x00")

    return {"orientation": numbers(values.get("orientation")), "rows": text(values.get("rows")),
            "columns": text(values.get("columns")), "pixel_spacing": numbers(values.get("pixel_spacing")),
            "frame_of_reference": text(values.get("frame_of_reference"))}


def _differs(key: str, a, b) -> bool:
    if a is None or b is None or key not in ("orientation", "pixel_spacing"):
        return a != b
    if len(a) != len(b):
        return True
    return not (np.allclose(a, b, atol=DIRECTION_TOL, rtol=0) if key == "orientation" else
                np.allclose(a, b, rtol=SPACING_RTOL, atol=0))


def inconsistent_slice(headers: list[tuple[Path, dict]]) -> str | None:
    """A sentence naming the first slice of ``headers`` ((path, :func:`slice_header`) pairs) that
    does not form one volume with the first: another ImageOrientationPatient, size, pixel spacing
    or frame of reference. None when all agree. GDCM groups a series by its UID and stacks
    whatever is in it with the first slice's geometry."""
    first_path, first = headers[0]
    for path, header in headers[1:]:
        differs = next((k for k in HEADER_KEYWORDS if _differs(k, header[k], first[k])), None)
        if differs:
            return (f"{path}: {HEADER_KEYWORDS[differs]} differs from {first_path.name}'s; the slices do not "
                    "form one volume.")
    return None


def _read_headers(file_names) -> tuple[list[tuple[Path, dict]], np.ndarray]:
    """Each file's :func:`slice_header` and (N, 3) LPS position (mm) of its first voxel, in
    ``file_names``' order (headers only, through ITK)."""
    reader = sitk.ImageFileReader()
    headers, origins = [], []
    for name in file_names:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        raw = {k: reader.GetMetaData(t) if reader.HasMetaDataKey(t) else None for k, t in _ITK_TAGS.items()}
        headers.append((Path(name), slice_header(raw)))
        origins.append(reader.GetOrigin())
    return headers, np.asarray(origins, float).reshape(-1, 3)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def check_dicom_folder(folder: str | os.PathLike) -> None:
    """Name a damaged DICOM file in a series folder before anything is read.

    GDCM leaves out of a series every file it cannot parse (a slice cut short by a failed
    copy, a corrupt header): the volume would be built from the other slices, a slice silently
    missing. So every file in the folder that is a DICOM file (``DICM`` at byte 128) must be
    readable; one that is not is named, with :class:`InputError`. ``DICOMDIR`` is skipped.
    """
    folder = Path(folder)
    try:
        check_folder_entries(folder)  # a FIFO would block GDCM's scan below
    except FileProblem as exc:
        raise InputError(f"{folder}: cannot read the DICOM folder: {exc}.") from None
    series = sitk.ImageSeriesReader()
    readable = {os.path.normpath(n) for uid in series.GetGDCMSeriesIDs(str(folder))
                for n in series.GetGDCMSeriesFileNames(str(folder), uid)}
    reader = sitk.ImageFileReader()
    for entry in sorted(folder.iterdir()):
        if (entry.name.upper() == "DICOMDIR" or os.path.normpath(entry) in readable
                or not entry.is_file() or not _has_dicom_magic(entry)):
            continue
        reader.SetFileName(str(entry))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(f"{entry}: damaged DICOM file in the series folder {folder} (cut short or "
                             "corrupt; it cannot be read as an image): the series would be read without "
                             "it. Restore the file, or remove it if it does not belong to the series.") from None


def read_dicom_series(folder: Path, warnings: list[str]) -> sitk.Image:
    """The one DICOM series in ``folder`` (every DICOM file in it checked first); doubts such
    as uneven slice spacing are appended to ``warnings``."""
    check_dicom_folder(folder)
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series (and no image file).")
    if len(series) > 1:
        raise InputError(
            f"{folder}: folder holds {len(series)} DICOM series; put the CE-T1 series "
            "in a folder of its own or pass one image file."
        )
    names = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    headers, origins = _read_headers(names)
    problem = inconsistent_slice(headers)  # before any pixel data is read
    if problem:
        raise InputError(problem)
    reader.SetFileNames(names)
    image = reader.Execute()
    normal = np.reshape(image.GetDirection(), (3, 3))[:, 2]
    positions = origins @ normal  # along the slice normal (mm)
    _refuse_shared_positions(folder, names, positions)
    sheared = slice_shear_mm(origins, normal)
    if sheared > 0.5 * min(image.GetSpacing()[:2]):
        raise InputError(
            f"{folder}: the slices are shifted within their plane from one to the next (by up to "
            f"{sheared:.1f} mm over {len(names)} slices: a gantry tilt or a sheared series), and ITK "
            "would stack them straight, misplacing the anatomy. Resample the series onto a regular "
            "grid first (e.g. Slicer's DICOM 'acquisition geometry regularization').")
    misplaced, step = stacking_error_mm(positions, image.GetSpacing()[2])
    if misplaced > step * (1 + 1e-3):
        raise InputError(
            f"{folder}: slices are missing from the series (gaps up to {np.diff(np.sort(positions)).max():.3g} mm "
            f"between slices {step:.3g} mm apart), and ITK would stack its {len(names)} slices evenly, misplacing "
            f"some by {misplaced:.1f} mm, more than a slice. Export the complete series, or resample it onto a "
            "regular grid first (e.g. Slicer's DICOM 'acquisition geometry regularization').")
    note = slice_spacing_note(positions, image.GetSpacing()[2])
    if note:
        warnings.append(f"{folder}: {note}")
    return image


def stacking_error_mm(positions: np.ndarray, spacing: float) -> tuple[float, float]:
    """(largest distance, mm, between a slice's true position along the normal and where ITK puts
    it, stacking the sorted ``positions`` evenly at ``spacing`` from the first; the median gap
    between slices, mm). One missing slice misplaces some slices by up to a slice, more by more."""
    if len(positions) < 2:
        return 0.0, float(spacing)
    ordered = np.sort(positions)
    stacked = ordered[0] + np.arange(len(ordered)) * spacing
    return float(np.abs(ordered - stacked).max()), float(np.median(np.diff(ordered)))


def _refuse_shared_positions(folder: Path, names, positions: np.ndarray) -> None:
    """:class:`InputError` when two slices lie at one position along the normal (``positions``,
    mm; within 1 % of the median step): a folder holding two volumes (echoes, time points, a
    repeat) or a slice twice, which ITK would interleave into one volume with a fraction of the
    real spacing."""
    if len(positions) < 2:
        return
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(positions[order])
    step = float(np.median(gaps))
    same = np.flatnonzero(gaps <= max(0.01 * step, 1e-4))
    if same.size:
        a, b = (Path(names[order[i]]).name for i in (same[0], same[0] + 1))
        raise InputError(
            f"{folder}: slices {a} and {b} lie at the same position ({positions[order[same[0]]]:.2f} mm "
            f"along the slice axis; {same.size} such pair(s)): the folder holds more than one volume "
            "(echoes, time points or a repeated slice). Put one volume's slices in a folder of their own.")


def slice_shear_mm(origins: np.ndarray, normal: np.ndarray) -> float:
    """The largest in-plane offset (mm) of a slice's origin from the first slice's, i.e. how far
    the stack leans away from the slices' unit ``normal`` (0 for a regular series)."""
    step = origins - origins[0]
    in_plane = step - np.outer(step @ normal, normal)
    return float(np.linalg.norm(in_plane, axis=1).max(initial=0.0))


def slice_spacing_note(positions: np.ndarray, expected: float, tolerance: float = 0.1) -> str | None:
    """A sentence when the slices of a DICOM series (``positions`` along their normal, mm) are
    unevenly spaced (a missing or duplicate slice): ITK builds the volume with one spacing
    (``expected``, mm), so such a volume is distorted."""
    if len(positions) < 3:
        return None
    gaps = np.abs(np.diff(np.sort(positions)))
    if np.all(np.abs(gaps - expected) <= tolerance * expected):
        return None
    return (f"slice spacing is uneven ({gaps.min():.3g} to {gaps.max():.3g} mm between "
            f"{len(positions)} slices; the volume assumes {expected:.3g} mm): a slice may be missing or "
            "duplicated, so distances and volumes along the slice axis are off there.")
