"""Reading, validating and atomically writing images.

Images at the library's boundaries are ``SimpleITK.Image`` objects in physical
space (ITK's LPS convention: x grows to the patient's Left, y to Posterior, z to
Superior). ``sitk.GetArrayFromImage`` gives numpy arrays in (k, j, i) = (z, y, x)
index order; that is the axis order of every array in this library.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as stdio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_series import read_dicom_series
from .errors import ConstantImageError, InputError, OutputError
from .filecheck import (
    FileProblem,
    check_folder_entries,
    check_image_file,
    file_kind,
    require_regular,
)

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


def _check_file(p: Path, role: str, trust_header: bool, warnings: list[str]) -> str:
    """Refuse special, damaged or untrustworthy files before ITK opens them; returns the kind."""
    kind = file_kind(p)
    if kind == "missing":
        raise InputError(f"{p}: {role} file not found.")
    try:
        if kind == "folder":
            check_folder_entries(p)
            return kind
        findings = check_image_file(p)
    except FileProblem as exc:
        raise InputError(f"{p}: cannot read the {role} image: {exc}.") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {role} image ({exc.strerror}).") from None
    if findings.untrusted and not trust_header:
        raise InputError(f"{p}: {role} image orientation cannot be trusted: {findings.untrusted[0]}. "
                         "Fix the header, or pass --trust-header to use the geometry as ITK reads it.")
    warnings.extend(f"{p}: {u}; used as read because of --trust-header." for u in findings.untrusted)
    return kind


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
    kind = _check_file(p, role, trust_header, warnings)
    try:
        with tempfile.TemporaryFile() as chatter:
            with _stderr_to(chatter):  # ITK prints warnings on stderr; they become our warnings
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
    return image


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
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{path}: the {role} image has {bad} NaN/Inf voxels; fix or mask them first.")
    if array.min() == array.max() and not constant_ok:
        raise ConstantImageError(
            f"{path}: the {role} image is constant (every voxel = {array.min()}); "
            "it holds no image data."
        )


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


def read_json_object(path: str | os.PathLike, what: str, error: type[Exception] = InputError) -> dict:
    """The JSON object in a UTF-8 file; ``error`` naming the file (and ``what`` it is) when the
    text is not valid JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc}).") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc}).") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object.")
    return data


def read_csv_rows(path: str | os.PathLike, what: str = "manifest") -> list[dict[str, str]]:
    """Rows of a CSV file with a header (UTF-8, BOM allowed); :class:`InputError` naming the
    file when it is missing or has no rows. ``what`` names the file in messages."""
    p = Path(path)
    try:
        require_regular(p, what)
        raw = p.read_bytes()
    except FileProblem as exc:
        raise InputError(f"{p}: {exc}.") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {what} ({exc.strerror}).") from None
    if b"\0" in raw:
        raise InputError(f"{p}: the {what} is a binary file, not a CSV text file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: the {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8 CSV.") from None
    try:
        rows = list(csv.DictReader(stdio.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{p}: the {what} is not valid CSV ({exc}).") from None
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


def check_writable(path: Path, overwrite: bool, create: bool = True) -> None:
    """Raise :class:`OutputError` if ``path`` exists (without ``overwrite``) or is a folder, or
    its folder cannot be written. ``create`` makes the folder; otherwise the nearest existing
    parent must be a writable folder (a run that fails later then leaves no empty folder)."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it.")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder where an output file goes.")
    folder = path.parent
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror}).") from None
    existing = next(f for f in (folder, *folder.parents) if f.exists() or f == f.parent)
    if not existing.is_dir():
        raise OutputError(f"{existing}: cannot create the output folder {folder} (a file is in the way).")
    if not os.access(existing, os.W_OK):
        raise OutputError(f"{existing}: output folder is not writable.")


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


@contextlib.contextmanager
def _stderr_to(sink):
    """Send file descriptor 2 to ``sink`` for a while: ITK's NIfTI writer reports a short write
    (``** ERROR: NWAD``) on stderr and returns normally; the caller turns it into one error line."""
    getattr(sys.stderr, "flush", lambda: None)()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_image_file(path: Path, image: sitk.Image) -> None:
    """Check that ``path`` holds all of ``image``: the file is complete
    (declared data size present, compressed stream intact) and its header has the image's
    size and spacing. Raises :class:`FileProblem`."""
    check_image_file(path, values=False)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise FileProblem("written file cannot be read back") from None
    if (reader.GetSize() != image.GetSize()
            or not np.allclose(reader.GetSpacing(), image.GetSpacing(), rtol=1e-5)):
        raise FileProblem(f"written file has size {reader.GetSize()} / spacing {reader.GetSpacing()} "
                          f"instead of {image.GetSize()} / {image.GetSpacing()}")


def stage_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` to a temporary file beside ``path``, verify it (:func:`verify_image_file`)
    and return the temporary path; :class:`OutputError` (temporary file removed) if anything
    fails, a full disk included. Rename it with :func:`commit`."""
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        with tempfile.TemporaryFile() as chatter:
            with _stderr_to(chatter):
                sitk.WriteImage(image, str(tmp), useCompression=compress)
            chatter.seek(0)
            said = chatter.read().decode("utf-8", "replace").strip()
        os.chmod(tmp, default_file_mode())
        _fsync(tmp)
        verify_image_file(tmp, image)
    except (RuntimeError, OSError, FileProblem) as exc:
        tmp.unlink(missing_ok=True)
        detail = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        itk = f"; ITK said: {said.splitlines()[-1][:160]}" if "said" in locals() and said else ""
        raise OutputError(f"{path}: cannot write the image ({detail}{itk}); nothing was replaced.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def stage_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to a verified temporary file beside ``path``; see :func:`stage_image`."""
    return stage_bytes(text.encode("utf-8"), path)


def stage_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to a verified temporary file beside ``path``; see :func:`stage_image`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        if tmp.stat().st_size != len(data):
            raise OSError(0, f"wrote {tmp.stat().st_size} of {len(data)} bytes")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was replaced.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename verified temporary files onto their final names, with SIGINT/SIGTERM held back
    until all are in place (a signal cannot leave a label map without its table)."""
    mask = getattr(signal, "pthread_sigmask", None)  # POSIX only
    previous = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if mask else None
    done = 0
    try:
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OutputError(f"{path}: cannot write ({exc.strerror}).") from None
            done += 1
    finally:
        for tmp, _ in staged[done:]:
            tmp.unlink(missing_ok=True)
        if mask:
            mask(signal.SIG_SETMASK, previous)


def write_image(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False,
                compress: bool = True) -> Path:
    """Write ``image`` atomically (verified temporary file in the same folder, then rename)."""
    path = Path(path)
    check_writable(path, overwrite)
    commit([(stage_image(image, path, compress), path)])
    return path


def write_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a text file atomically (verified temporary file, then rename)."""
    path = Path(path)
    check_writable(path, overwrite)
    commit([(stage_text(text, path), path)])
    return path
