"""Writing a run's outputs: label map, probability map, Slicer segmentation (``lesions.seg.nrrd``),
lesion table (CSV, JSON), run.json.

Every file is written atomically; an existing file is replaced only with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import SimpleITK as sitk

from .errors import FolderBusyError, OutputError
from .lesions import COLUMNS, LesionTableRow
from .options import OutputFormat
from .run_record import output_hashes
from .slicer_seg import SEG_NRRD_NAME, segmentation_image
from .staging import check_writable, commit, stage_images, stage_text, write_text

try:
    import fcntl
except ImportError:  # Windows: msvcrt byte-range locks instead of flock
    fcntl = None
    import msvcrt

LOCK_NAME = ".brainmetseg.lock"
OUTPUT_NAMES = {"labels": "lesion_labels", "probability": "probability"}
FORMATS = {f.value: f.suffix for f in OutputFormat}
# Candidates just below the cut of a model with a candidate scorer, listed for review; they
# are not in the label map (BrainMetSegLib.candidate_stage).
POSSIBLE_CSV = "possible_lesions.csv"


def table_csv(rows: Sequence[LesionTableRow], scored: bool = False, extra: tuple[str, ...] = ()) -> str:
    """CSV of lesion rows, columns :data:`COLUMNS` (``lesion_probability`` only for a run with
    a candidate scorer, ``scored``) and then ``extra``."""
    columns = [c for c in COLUMNS if scored or c != "lesion_probability"] + list(extra)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
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


def planned_paths(outdir: Path, ext: str, scored: bool = False) -> dict[str, Path]:
    """The files a run writes (``scored``: a run with a candidate scorer, which also lists the
    possible lesions)."""
    paths = {
        "labels": outdir / f"lesion_labels{ext}",
        "probability": outdir / f"probability{ext}",
        "segmentation": outdir / SEG_NRRD_NAME,
        "table_csv": outdir / "lesions.csv",
        "table_json": outdir / "lesions.json",
        "run": outdir / "run.json",
    }
    if scored:
        paths["possible_csv"] = outdir / POSSIBLE_CSV
    return paths


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def stale_paths(outdir: Path, ext: str) -> list[Path]:
    """Image outputs of another format in ``outdir`` (an earlier run's), replaced by this run's."""
    return [outdir / f"{stem}{other}" for stem in OUTPUT_NAMES.values() for other in FORMATS.values()
            if other != ext and (outdir / f"{stem}{other}").exists()]


def check_outputs(outdir: Path, ext: str, overwrite: bool,
                  inputs: Iterable[str | os.PathLike] = (), scored: bool = False) -> dict[str, Path]:
    """Fail before any work if an output exists (without overwrite), the folder is not writable,
    or an output (or a stale output to be removed) would replace one of ``inputs``, or the output
    folder is inside an input folder (a DICOM series)."""
    if ext not in FORMATS.values():
        raise OutputError(f"{outdir}: unknown output format {ext!r}.")
    paths = planned_paths(outdir, ext, scored)
    for path in paths.values():
        check_writable(path, overwrite, create=False)
    stale = stale_paths(outdir, ext)
    if stale and not overwrite:
        raise OutputError(f"{stale[0]}: an earlier run's output exists; pass --overwrite to replace "
                          "that run's outputs.")
    for given in inputs:
        source = Path(given)
        if source.is_dir() and _inside(outdir, source):
            raise OutputError(f"{outdir}: output folder is inside the input folder {source}; "
                              "choose another output folder (inputs are never modified).")
        for path in (*paths.values(), *stale_paths(outdir, ext)):
            if path.exists() and source.exists() and os.path.samefile(path, source):
                raise OutputError(f"{path}: is an input of this run ({source}); choose another output "
                                  "folder (inputs are never overwritten).")
    return paths


def write_result(result, outdir: Path, ext: str, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> dict[str, Path]:
    """Write ``result`` (a :class:`~BrainMetSegLib.pipeline_types.Result`) into ``outdir``.

    All files are first written under temporary names and verified (a full disk is caught
    there), then renamed together; image outputs of another format from an earlier run are
    removed only after that (with ``overwrite``). A failure leaves the folder as it was.
    ``inputs`` are never written over (see :func:`check_outputs`).
    """
    scored = result.provenance.get("settings", {}).get("candidate_stage") is not None
    paths = check_outputs(outdir, ext, overwrite, inputs, scored)
    run = {"case": result.case_id, **result.provenance, "timings_s": result.timings_s,
           "lesions": result.n_lesions, "warnings": list(result.warnings),
           "outputs": {k: p.name for k, p in paths.items()}}
    created = _make_folders(outdir)
    staged: list[tuple[Path, Path]] = []
    try:
        images = [(_as_pixel(result.labels, sitk.sitkUInt16), paths["labels"]),
                  (_as_pixel(result.probability, sitk.sitkFloat32), paths["probability"]),
                  (segmentation_image(result.labels), paths["segmentation"])]
        tmps = stage_images(images)
        staged.extend(zip(tmps, [path for _, path in images], strict=True))
        staged.append((stage_text(table_csv(result.table, scored), paths["table_csv"]), paths["table_csv"]))
        if scored:
            staged.append((stage_text(table_csv(result.possible, True, ("status", "reason")), paths["possible_csv"]),
                           paths["possible_csv"]))
        content = {"case": result.case_id, "lesions": result.table}
        if scored:
            content["possible_lesions"] = result.possible
        table = json.dumps(_json_safe(content), indent=2) + "\n"
        staged.append((stage_text(table, paths["table_json"]), paths["table_json"]))
        # run.json, written last, records each output's sha256: a later --skip-existing or
        # summarize believes the folder only while every output still has that content.
        run["output_sha256"] = output_hashes({k: tmp for tmp, final in staged for k, p in paths.items() if p == final})
        staged.append((stage_text(json.dumps(_json_safe(run), indent=2) + "\n", paths["run"]), paths["run"]))
        check_outputs(outdir, ext, overwrite, inputs, scored)  # nothing appeared meanwhile
        commit(staged)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for made in reversed(created):
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    for old in stale_paths(outdir, ext):  # only now: the new outputs are in place and verified
        old.unlink(missing_ok=True)
    if not scored and overwrite:  # an earlier scored run's review list does not belong to this run
        (outdir / POSSIBLE_CSV).unlink(missing_ok=True)
    return paths


def _as_pixel(image: sitk.Image, pixel_id: int) -> sitk.Image:
    """``image`` as ``pixel_id`` (a copy by ``sitk.Cast`` only where the type differs)."""
    return image if image.GetPixelID() == pixel_id else sitk.Cast(image, pixel_id)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return the folders created (deepest last)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror}).") from None
    return missing[::-1]


def _lock_nonblocking(fd: int) -> None:
    """Exclusive lock on an open file, or :class:`OSError` (EWOULDBLOCK/EACCES) if held elsewhere."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


@contextlib.contextmanager
def output_folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the duration of a run.

    The lock is ``fcntl.flock`` on ``folder/.brainmetseg.lock`` (non-blocking): a second run
    into the same folder fails at once with :class:`OutputError` instead of mixing its outputs
    with the first run's. The folder (and missing parents) is created if needed; if the run
    fails and a folder created here is left empty, it is removed again, so a failed run leaves
    nothing behind. The lock file is removed on exit. Yields the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: output path exists and is not a folder.")
    created = _make_folders(folder)
    lock_path = folder / LOCK_NAME
    fd = -1
    ok = False
    try:
        while True:  # the file may be unlinked by the holder between our open and flock: retry
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot create a lock file in the output folder "
                                  f"({exc.strerror}).") from None
            try:
                _lock_nonblocking(fd)
            except OSError as exc:
                os.close(fd)
                fd = -1
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                    raise FolderBusyError(f"{folder}: another brainmetseg run is writing into this folder "
                                      f"(locked by {lock_path.name}); wait for it or choose another "
                                      "output folder.") from None
                raise OutputError(f"{folder}: cannot lock the output folder ({exc.strerror}).") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = -1
        yield folder
        ok = True
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                lock_path.unlink()
            os.close(fd)
        if not ok:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    made.rmdir()  # only succeeds when empty


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """A blocking exclusive lock shared by every process updating a file in ``folder``: flock
    on the folder itself (no lock file to leave behind); on Windows a lock file beside it."""
    if fcntl is not None:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
        return
    with open(folder / ".brainmetseg-shared.lock", "a+b") as fh:  # pragma: no cover - Windows
        msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
        try:
            yield
        finally:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)


def update_shared_text(path: str | os.PathLike, merge: Callable[[str | None], str]) -> Path:
    """Update a file several processes share (a cohort's ``summary.csv``): under a lock, read it
    (None when absent), write ``merge(old_text)`` atomically. Never last-writer-wins: each
    writer sees the others' rows and keeps them."""
    path = Path(path)
    _make_folders(path.parent)
    with _folder_lock(path.parent):
        try:
            old = path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            old = None  # unreadable: rewritten from this process's rows
        write_text(merge(old), path, overwrite=True)
    return path
