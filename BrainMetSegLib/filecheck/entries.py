"""What a path is, from ``stat`` alone: special files are refused before anything opens them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .findings import FileProblem


def file_kind(path: Path) -> str:
    """``"file"``, ``"folder"``, ``"missing"`` or a special kind (``"named pipe"``, ``"device"``, ...),
    from ``lstat``/``stat`` only: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable entry ({exc.strerror})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def require_regular(path: Path, what: str) -> None:
    """:class:`FileProblem` unless ``path`` is a regular file (nothing is opened)."""
    kind = file_kind(path)
    if kind == "missing":
        raise FileProblem(f"{what} not found")
    if kind != "file":
        raise FileProblem(f"{what} is a {kind}, not a regular file; refusing to open it")


def check_folder_entries(folder: Path) -> None:
    """A DICOM folder must not hold special files (GDCM would open them and could block)."""
    for entry in os.scandir(folder):
        kind = file_kind(Path(entry.path))
        if kind not in ("file", "folder"):
            raise FileProblem(f"holds {entry.name!r}, a {kind}; refusing to read the folder")
