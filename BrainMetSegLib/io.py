"""Reading, validating and atomically writing images.

Images at the library's boundaries are ``SimpleITK.Image`` objects in physical
space (ITK's LPS convention: x grows to the patient's Left, y to Posterior, z to
Superior). ``sitk.GetArrayFromImage`` gives numpy arrays in (k, j, i) = (z, y, x)
index order; that is the axis order of every array in this library.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ConstantImageError, InputError, OutputError

# Image files the library reads (besides DICOM series folders), in the order they are looked for.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def split_image_suffix(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of an image file name (case-insensitive suffix), None for anything else."""
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return None


def format_family(path: str | os.PathLike) -> str:
    """Output extension matching an input's format family.

    NIfTI and DICOM inputs give ``.nii.gz``; NRRD gives ``.nrrd``; MetaImage ``.mha``.
    """
    name = str(path).lower()
    if name.endswith((".nrrd", ".nhdr")):
        return ".nrrd"
    if name.endswith((".mha", ".mhd")):
        return ".mha"
    return ".nii.gz"


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series (and no image file).")
    if len(series) > 1:
        raise InputError(
            f"{folder}: folder holds {len(series)} DICOM series; put the CE-T1 series "
            "in a folder of its own or pass one image file."
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def read_image(path: str | os.PathLike, role: str = "image") -> sitk.Image:
    """Read a 3D scalar image (NIfTI, NRRD, MetaImage, or a DICOM series folder).

    ``role`` names the input in error messages (e.g. ``"CE-T1"``, ``"FLAIR"``).
    Raises :class:`InputError` naming the file for anything missing, unreadable,
    not 3D, not scalar, non-finite or constant. Returns the image unchanged
    (pixel type preserved); the file is never modified.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {role} file not found.")
    try:
        image = _read_dicom_series(p) if p.is_dir() else sitk.ReadImage(str(p))
    except InputError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(
            f"{p}: cannot read the {role} image ({first[:200]}). Supported: NIfTI (.nii, "
            ".nii.gz), NRRD, MetaImage (.mha/.mhd) or a DICOM series folder."
        ) from None
    validate_image(image, p, role)
    return image


def validate_image(image: sitk.Image, path: str | os.PathLike, role: str = "image") -> None:
    """Check that ``image`` is a usable 3D scalar volume; raise :class:`InputError` if not."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: the {role} image has {image.GetNumberOfComponentsPerPixel()} components "
            "per voxel (vector/RGB); a scalar (grey-level) image is needed."
        )
    dim = image.GetDimension()
    size = image.GetSize()
    if dim == 4 and size[3] == 1:
        pass  # a 4D file with a single volume is read as 3D by the caller
    elif dim != 3:
        raise InputError(
            f"{path}: the {role} image is {dim}D with size {size}; a single 3D volume is "
            "needed (split 4D series into volumes first)."
        )
    if dim == 3 and min(size) < 2:
        raise InputError(f"{path}: the {role} image has size {size}; this is a 2D slice, not a 3D volume.")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{path}: the {role} image has {bad} NaN/Inf voxels; fix or mask them first.")
    if array.min() == array.max():
        raise ConstantImageError(
            f"{path}: the {role} image is constant (every voxel = {array.min()}); "
            "it holds no image data."
        )


def read_scalar_volume(path: str | os.PathLike, role: str = "image") -> sitk.Image:
    """Read and validate an image and return it as 3D float32 (a 1-volume 4D file is squeezed)."""
    return as_scalar_volume(read_image(path, role))


def as_scalar_volume(image: sitk.Image) -> sitk.Image:
    """A validated image (:func:`validate_image`) as 3D float32; a 1-volume 4D image is squeezed."""
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    return sitk.Cast(image, sitk.sitkFloat32)


def read_csv_rows(path: str | os.PathLike, what: str = "manifest") -> list[dict[str, str]]:
    """Rows of a CSV file with a header (UTF-8, BOM allowed); :class:`InputError` naming the
    file when it is missing or has no rows. ``what`` names the file in messages."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} not found.")
    with open(p, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(f"{p}: {what} has no rows.")
    return rows


def same_geometry(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3, tol_dir: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin (within ``tol_mm``) and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol_mm)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol_dir)
    )


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (of every file, sorted, for a DICOM folder)."""
    p = Path(path)
    digest = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def check_writable(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputError` if ``path`` exists (without ``overwrite``) or its folder is not writable."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it.")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror}).") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: output folder is not writable.")


def default_file_mode() -> int:
    """rw for everyone the umask allows (mkstemp's files are private, 0600, by default)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_target(path: Path) -> Path:
    """A temporary name in the same folder, keeping the suffix SimpleITK keys on."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_image(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False,
                compress: bool = True) -> Path:
    """Write ``image`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    check_writable(path, overwrite)
    tmp = _atomic_target(path)
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except (RuntimeError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the image ({exc}).") from None
    return path


def write_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror}).") from None
    return path
