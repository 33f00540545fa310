"""The reference (source) DICOM series of a DICOM export: read, check, and map a label map onto it.

A reference series is the folder of single-frame DICOM images the CE-T1 came from. Its
slices are sorted along the slice normal (the cross product of the row and column
directions of ``ImageOrientationPatient``), so frame ``f`` of every exported object is
``ReferenceSeries.datasets[f]``. Coordinates are DICOM patient coordinates (LPS mm).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from ..dicom_series import HEADER_KEYWORDS, inconsistent_slice, slice_header
from ..errors import InputError

# Geometry tolerance of positions (mm); direction cosines: dicom_series.DIRECTION_TOL.
POSITION_TOL_MM = 0.01
# Relative deviation of a slice step from the series' median step that counts as a gap.
STEP_TOL = 0.01


@dataclass(frozen=True)
class ReferenceSeries:
    """A checked single-frame image series, slices sorted along the slice normal.

    files, datasets: one per slice (datasets read without pixel data).
    row_lps, column_lps: unit vectors of increasing column index / increasing row index.
    normal_lps: row x column; slices are sorted by position along it.
    spacing_mm: (column spacing, row spacing, slice step) = (x, y, z) of the grid.
    """

    folder: Path
    files: tuple[Path, ...]
    datasets: tuple[pydicom.Dataset, ...]
    row_lps: np.ndarray
    column_lps: np.ndarray
    normal_lps: np.ndarray
    spacing_mm: tuple[float, float, float]

    @property
    def size(self) -> tuple[int, int, int]:
        """(columns, rows, slices) = the (x, y, z) size of the grid."""
        first = self.datasets[0]
        return int(first.Columns), int(first.Rows), len(self.datasets)

    @property
    def origin_lps(self) -> np.ndarray:
        return np.asarray(self.datasets[0].ImagePositionPatient, float)

    def grid(self) -> sitk.Image:
        """An empty uint8 image with the series' geometry (x=column, y=row, z=slice)."""
        image = sitk.Image(list(self.size), sitk.sitkUInt8)
        image.SetOrigin(tuple(self.origin_lps))
        image.SetSpacing(self.spacing_mm)
        image.SetDirection(tuple(np.column_stack([self.row_lps, self.column_lps,
                                                  self.normal_lps]).ravel()))
        return image


def _dicom_files(paths: list[Path]) -> list[tuple[Path, pydicom.Dataset]]:
    """Every readable DICOM image among ``paths`` (other files are skipped)."""
    out = []
    for path in sorted(paths):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue  # not DICOM (notes, thumbnails, DICOMDIR-less junk)
        if "Rows" in ds and "ImagePositionPatient" in ds:
            out.append((path, ds))
    return out


def read_reference_series(source: str | os.PathLike | Sequence[str | os.PathLike]) -> ReferenceSeries:
    """Read and check the image series in a folder (or given as a list of its files, e.g.
    from Slicer's DICOM database); :class:`InputError` naming the file if it is missing,
    holds no or several series, is multi-frame, lacks geometry attributes, has
    inconsistent slices or a missing slice (a gap in the slice positions)."""
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"{folder}: DICOM reference series folder not found.")
        paths = [p for p in folder.iterdir() if p.is_file()]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise InputError("no DICOM reference files given.")
        folder = paths[0].parent
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{missing[0]}: DICOM reference file not found.")
    found = _dicom_files(paths)
    if not found:
        raise InputError(f"{folder}: folder holds no DICOM image files (the reference series is missing).")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in found}
    if len(series) > 1:
        raise InputError(f"{folder}: folder holds {len(series)} DICOM series; the reference must be "
                         "one series in a folder of its own.")
    for path, ds in found:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(f"{path}: multi-frame image; the reference must be a series of "
                             "single-frame slices.")
        for keyword in ("ImageOrientationPatient", "PixelSpacing", "FrameOfReferenceUID",
                        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if not ds.get(keyword):
                raise InputError(f"{path}: DICOM attribute {keyword} is missing; cannot refer to "
                                 "this slice.")
    first = found[0][1]
    iop = np.asarray(first.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    problem = inconsistent_slice([(path, slice_header({k: ds.get(w) for k, w in HEADER_KEYWORDS.items()}))
                                  for path, ds in found])
    if problem:
        raise InputError(problem)
    found.sort(key=lambda item: float(np.dot(normal, np.asarray(item[1].ImagePositionPatient, float))))
    files = [p for p, _ in found]
    positions = np.array([ds.ImagePositionPatient for _, ds in found], float)
    along = positions @ normal
    if len(found) < 2:
        raise InputError(f"{files[0]}: the reference series has a single slice; a 3D series is needed.")
    steps = np.diff(along)
    if steps.min() < POSITION_TOL_MM:
        i = int(np.argmin(steps))
        raise InputError(f"{files[i + 1]}: same slice position as {files[i].name}; the series holds "
                         "duplicate slices.")
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > max(STEP_TOL * step, POSITION_TOL_MM))
    if bad.size:
        i = int(bad[0])
        missing = round(steps[i] / step) - 1
        what = (f"{missing} slice(s) missing" if missing >= 1 else "uneven slice spacing")
        raise InputError(f"{folder}: reference series incomplete: {what} between {files[i].name} and "
                         f"{files[i + 1].name} ({steps[i]:.3f} mm apart, the series steps {step:.3f} mm).")
    # in-plane offsets between slices must follow the normal (no shear)
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    if np.abs(drift).max() > max(POSITION_TOL_MM, 0.01 * step):
        i = int(np.argmax(np.abs(drift).max(axis=1)))
        raise InputError(f"{files[i]}: slice position is shifted within the plane (gantry tilt or "
                         "mixed stacks); not a regular volume.")
    col_spacing, row_spacing = float(first.PixelSpacing[1]), float(first.PixelSpacing[0])
    return ReferenceSeries(folder, tuple(files), tuple(ds for _, ds in found), row, col, normal,
                           (col_spacing, row_spacing, step))


def check_lattice(image, reference: ReferenceSeries, image_name: str = "image") -> None:
    """:class:`InputError` unless ``image``'s grid is the reference series' voxel lattice.

    image: anything with GetSize/GetSpacing/GetOrigin/GetDirection (a ``sitk.Image`` or a
    ``sitk.ImageFileReader`` after ReadImageInformation). Axes may be permuted or flipped
    (as after a DICOM-to-NIfTI conversion); the voxel centres must coincide within
    :data:`POSITION_TOL_MM`.
    """
    spacing = np.asarray(image.GetSpacing(), float)
    size = np.asarray(image.GetSize())
    to_index = np.linalg.inv(np.reshape(image.GetDirection(), (3, 3)) @ np.diag(spacing))
    grid = reference.grid()
    steps = to_index @ np.reshape(grid.GetDirection(), (3, 3)) @ np.diag(grid.GetSpacing())
    start = to_index @ (reference.origin_lps - np.asarray(image.GetOrigin()))
    far = start + steps @ (np.asarray(reference.size) - 1)
    signed_permutation = (np.allclose(steps, np.round(steps), atol=1e-3)
                          and sorted(np.abs(np.round(steps)).sum(axis=0)) == [1, 1, 1])
    ok = (
        len(size) == 3 and signed_permutation
        and np.allclose(start, np.round(start), atol=POSITION_TOL_MM / spacing.min())
        and np.all(np.round(np.minimum(start, far)) == 0)
        and np.all(np.round(np.maximum(start, far)) == size - 1)
    )
    if not ok:
        raise InputError(
            f"{reference.folder}: the reference series does not match the image geometry (series: "
            f"size {reference.size}, spacing {_format_triple(reference.spacing_mm)} mm, origin "
            f"{_format_triple(reference.origin_lps)} mm LPS; {image_name}: size {tuple(image.GetSize())}, "
            f"spacing {_format_triple(spacing)} mm, origin {_format_triple(image.GetOrigin())} mm LPS); pass the "
            "series the CE-T1 was made from.")


def labels_on_reference(labels: sitk.Image, reference: ReferenceSeries,
                        labels_name: str = "label map") -> np.ndarray:
    """The label map's values on the reference grid, (slice, row, column) order, uint16.

    The grids must be the same voxel lattice (:func:`check_lattice`); values are then
    copied exactly (nearest neighbour at coinciding voxel centres, no interpolation).
    """
    if labels.GetDimension() != 3:
        raise InputError(f"{labels_name}: label map is {labels.GetDimension()}D; 3D needed.")
    check_lattice(labels, reference, labels_name)
    resampled = sitk.Resample(labels, reference.grid(), sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                              sitk.sitkUInt16)
    return sitk.GetArrayFromImage(resampled)


def _format_triple(values) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"
