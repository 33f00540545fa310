"""Reading and validating images: the library's image inputs as ``SimpleITK.Image``.

Images at the library's boundaries are ``SimpleITK.Image`` objects in physical
space (ITK's LPS convention: x grows to the patient's Left, y to Posterior, z to
Superior). ``sitk.GetArrayFromImage`` gives numpy arrays in (k, j, i) = (z, y, x)
index order; that is the axis order of every array in this library. Writing them
(atomically) is :mod:`staging`'s job.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_series import read_dicom_series
from .errors import ConstantImageError, InputError
from .filecheck import (
    FileProblem,
    HeaderFindings,
    check_folder_entries,
    check_image_file,
    file_kind,
    sform_disagreement,
)
from .stderr_capture import stderr_to

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


def _check_file(p: Path, role: str, trust_header: bool, warnings: list[str]) -> tuple[str, HeaderFindings]:
    """Refuse special, damaged or untrustworthy files before ITK opens them; returns the kind
    and the header's findings."""
    kind = file_kind(p)
    if kind == "missing":
        raise InputError(f"{p}: {role} file not found.")
    try:
        if kind == "folder":
            check_folder_entries(p)
            return kind, HeaderFindings()
        findings = check_image_file(p)
    except FileProblem as exc:
        raise InputError(f"{p}: cannot read the {role} image: {exc}.") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {role} image ({exc.strerror}).") from None
    _untrusted(p, role, trust_header, warnings, findings.untrusted)
    return kind, findings


def _untrusted(p: Path, role: str, trust_header: bool, warnings: list[str], doubts: list[str]) -> None:
    """Refuse a file whose geometry is a guess (``doubts``), or with ``trust_header`` warn."""
    if doubts and not trust_header:
        raise InputError(f"{p}: {role} image orientation cannot be trusted: {doubts[0]}. "
                         "Fix the header, or pass --trust-header to use the geometry as ITK reads it.")
    warnings.extend(f"{p}: {u}; used as read because of --trust-header." for u in doubts)


def read_image(path: str | os.PathLike, role: str = "image", trust_header: bool = False,
               warnings: list[str] | None = None, constant_ok: bool = False) -> sitk.Image:
    """Read a 3D scalar image (NIfTI, NRRD, MetaImage, or a DICOM series folder).

    ``role`` names the input in error messages (e.g. ``"CE-T1"``, ``"FLAIR"``).
    Raises :class:`InputError` naming the file for anything missing, special (a FIFO),
    damaged (truncated, corrupt stream), of untrustworthy orientation (unless
    ``trust_header``; see :mod:`filecheck`), unreadable, not 3D, not scalar, non-finite or
    constant (unless ``constant_ok``: masks and label maps, see :func:`read_mask_image`).
    Doubts that do not stop the run are appended to ``warnings``. Returns the image
    unchanged (pixel type preserved); the file is never modified.
    """
    p = Path(path)
    warnings = [] if warnings is None else warnings
    kind, findings = _check_file(p, role, trust_header, warnings)
    try:
        with tempfile.TemporaryFile() as chatter:
            with stderr_to(chatter):  # ITK prints warnings on stderr; they become our warnings
                image = read_dicom_series(p, warnings) if kind == "folder" else sitk.ReadImage(str(p))
            chatter.seek(0)
            said = [ln.strip() for ln in chatter.read().decode("utf-8", "replace").splitlines()
                    if ln.strip() and not ln.startswith("WARNING: In ")]
        warnings.extend(f"{p}: ITK reported while reading: {line[:300]}" for line in dict.fromkeys(said))
    except InputError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(
            f"{p}: cannot read the {role} image ({first[:200]}). Supported: NIfTI (.nii, "
            ".nii.gz), NRRD, MetaImage (.mha/.mhd) or a DICOM series folder."
        ) from None
    validate_image(image, p, role, constant_ok)
    sform = sform_disagreement(image, findings.sform_ras)
    _untrusted(p, role, trust_header, warnings, [sform] if sform else [])
    return image


#: More distinct ids than any label map of lesions holds (brains with hundreds of metastases are
#: rare): such a "label map" is an image (an int16 MR scan holds thousands of values).
MAX_LABEL_IDS = 1000


def check_label_values(image: sitk.Image, path: str | os.PathLike, role: str) -> None:
    """:class:`InputError` when ``image``'s values cannot be a mask's or label map's (0 =
    background, positive integer ids): fractional (a probability map, whose every voxel above 0
    would count), negative, or more than :data:`MAX_LABEL_IDS` distinct ids (an image)."""
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f":
        fractional = array[array != np.round(array)]
        if fractional.size:
            raise InputError(f"{path}: the {role} holds non-integer values (e.g. {float(fractional[0]):.3g}): a "
                             "probability or intensity map, not a label map or mask. Threshold it first, or "
                             "pass the label map (lesion_labels.nii.gz).")
    if array.min() < 0:
        raise InputError(f"{path}: the {role} holds negative values (down to {array.min():g}); a label map "
                         "holds 0 (background) and positive ids.")
    # ids <= the largest value: counting them (a sort of every voxel) only where that could exceed the limit
    ids = np.unique(array).size - 1 if array.max() > MAX_LABEL_IDS else 0
    if ids > MAX_LABEL_IDS:
        raise InputError(f"{path}: the {role} holds {ids} distinct non-zero values, more than the "
                         f"{MAX_LABEL_IDS} ids a label map plausibly has: an image, not a label map?")


def read_mask_image(path: str | os.PathLike, role: str = "label map", trust_header: bool = False,
                    warnings: list[str] | None = None, empty_ok: bool = True) -> sitk.Image:
    """Read a mask or label map (see :func:`read_image`), where a constant image means
    something other than "no image data": all zero is an empty mask (no lesion: a valid answer
    when ``empty_ok``), a non-zero constant marks every voxel (a mask covering the whole
    image, not the brain or a lesion). :class:`InputError` saying which, naming the file."""
    image = read_image(path, role, trust_header, warnings, constant_ok=True)
    array = sitk.GetArrayViewFromImage(image)
    low, high = array.min(), array.max()
    if low != high:
        check_label_values(image, path, role)
        return image
    if low != 0:
        raise InputError(f"{path}: the {role} covers the whole image (every voxel is {low}); a {role} "
                         "marks a part of the image (outside is 0). Wrong file, or an inverted or "
                         "unthresholded mask?")
    if not empty_ok:
        raise InputError(f"{path}: the {role} is empty (every voxel is 0); it marks nothing.")
    return image


def validate_image(image: sitk.Image, path: str | os.PathLike, role: str = "image",
                   constant_ok: bool = False) -> None:
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
    _check_axes_perpendicular(image, path, role)
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{path}: the {role} image has {bad} NaN/Inf voxels; fix or mask them first.")
    if array.min() == array.max() and not constant_ok:
        raise ConstantImageError(
            f"{path}: the {role} image is constant (every voxel = {array.min()}); "
            "it holds no image data."
        )


#: Largest |cosine| between two of an image's axes (0.06 degrees off perpendicular) before the
#: grid counts as sheared: far above the rounding of NIfTI quaternions or DICOM direction cosines.
AXES_COSINE_TOLERANCE = 1e-3


def _check_axes_perpendicular(image: sitk.Image, path, role: str) -> None:
    """:class:`InputError` for a sheared grid (NRRD space directions or MetaImage matrices that
    are not perpendicular): resampling, measuring and writing all assume perpendicular axes."""
    n = image.GetDimension()
    d = np.reshape(image.GetDirection(), (n, n))[:3, :3]
    d = d / np.linalg.norm(d, axis=0)
    cosines = np.abs(d.T @ d - np.eye(3))
    worst = float(cosines.max())
    if worst > AXES_COSINE_TOLERANCE:
        angle = float(np.degrees(np.arccos(min(worst, 1.0))))
        raise InputError(f"{path}: the {role} image's axes are not perpendicular (two meet at {angle:.1f} "
                         "degrees: a sheared grid, e.g. a gantry tilt); resample it onto a regular grid first.")


def read_scalar_volume(path: str | os.PathLike, role: str = "image", trust_header: bool = False,
                       warnings: list[str] | None = None) -> sitk.Image:
    """Read and validate an image and return it as 3D float32 (a 1-volume 4D file is squeezed).

    :class:`InputError` when values do not fit float32 (e.g. float64 data near 1e300)."""
    return as_scalar_volume(read_image(path, role, trust_header, warnings), f"{path}: the {role} image")


def as_scalar_volume(image: sitk.Image, what: str = "the image") -> sitk.Image:
    """A validated image (:func:`validate_image`) as 3D float32; a 1-volume 4D image is squeezed.

    :class:`InputError` naming ``what`` when values do not fit float32."""
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    out = sitk.Cast(image, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(out)).all():
        peak = float(np.abs(sitk.GetArrayViewFromImage(image)).max())
        raise InputError(f"{what} has values (up to {peak:.3g}) beyond the float32 "
                         "range the pipeline computes in; rescale the image.")
    return out


def same_geometry(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3, tol_dir: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin (within ``tol_mm``) and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol_mm)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol_dir)
    )
