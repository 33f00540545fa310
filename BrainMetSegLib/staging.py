"""Writing outputs atomically: a verified temporary file beside each output, then a rename.

Nothing is overwritten without ``overwrite``; a failed write (a full disk included)
leaves the earlier file in place and no temporary file behind. Several outputs are
renamed together (:func:`commit`) so that a signal cannot leave a label map without
its table.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import OutputError
from .filecheck import FileProblem, check_image_file
from .stderr_capture import stderr_to


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


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """rw for everyone the umask allows (mkstemp's files are private, 0600, by default)."""
    return 0o666 & ~current_umask()


def _atomic_target(path: Path) -> Path:
    """A temporary name in the same folder, keeping the suffix SimpleITK keys on."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


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
    tmp, said = _write_staged(image, path, compress)
    _verify_staged(tmp, image, path, said)
    return tmp


def stage_images(items: Sequence[tuple[sitk.Image, str | os.PathLike]], compress: bool = True) -> list[Path]:
    """:func:`stage_image` of each (image, path), the same files and checks, with each file's
    fsync and verification (a full decompression: ~0.1 s for a probability map) done in a
    second thread while the next image is written (zlib and ITK release the GIL, so it runs
    on another core). Writes stay one at a time, each with its own capture of ITK's messages.
    On any failure every temporary file is removed and the failure of the earliest item
    raised, as :func:`stage_image` one by one would; returns the temporary paths in order."""
    tmps: list[Path] = []
    checks: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as pool:
        try:
            for image, path in items:
                tmp, said = _write_staged(image, Path(path), compress)
                tmps.append(tmp)
                checks.append(pool.submit(_verify_staged, tmp, image, Path(path), said))
        except Exception as exc:
            _remove_staged(tmps, checks)
            raise _earliest_failure(checks) or exc from None
        except BaseException:  # an interrupt is passed on as it is
            _remove_staged(tmps, checks)
            raise
        failure = _earliest_failure(checks)
        if failure is not None:
            _remove_staged(tmps, checks)
            raise failure from None
    return tmps


def _earliest_failure(checks: list[Future]) -> BaseException | None:
    """The first exception of ``checks`` in order (each waited for), or None."""
    for check in checks:
        exc = check.exception()
        if exc is not None:
            return exc
    return None


def _remove_staged(tmps: list[Path], checks: list[Future]) -> None:
    wait(checks)  # no verification still reading a file about to go
    for tmp in tmps:
        tmp.unlink(missing_ok=True)


def _write_staged(image: sitk.Image, path: Path, compress: bool) -> tuple[Path, str]:
    """ITK writes ``image`` into a temporary file beside ``path`` (its stderr captured);
    (temporary path, what ITK said). :class:`OutputError` (file removed) when the write fails."""
    tmp = _atomic_target(path)
    said = ""
    try:
        with tempfile.TemporaryFile() as chatter:
            with stderr_to(chatter):
                sitk.WriteImage(image, str(tmp), useCompression=compress)
            chatter.seek(0)
            said = chatter.read().decode("utf-8", "replace").strip()
        os.chmod(tmp, default_file_mode())
    except (RuntimeError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc, said) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, said


def _verify_staged(tmp: Path, image: sitk.Image, path: Path, said: str) -> None:
    """fsync the written temporary file and verify it (:func:`verify_image_file`);
    :class:`OutputError` (file removed) when either fails."""
    try:
        _fsync(tmp)
        verify_image_file(tmp, image)
    except (RuntimeError, OSError, FileProblem) as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc, said) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_error(path: Path, exc: BaseException, said: str) -> OutputError:
    detail = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
    itk = f"; ITK said: {said.splitlines()[-1][:160]}" if said else ""
    return OutputError(f"{path}: cannot write the image ({detail}{itk}); nothing was replaced.")


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
