"""Where ``brainmetseg view`` sends VTK's, Slicer's and trame's chatter: a log file, not the terminal.

VTK and Slicer's MRML write their warnings (e.g. "WindowResizeEvent will not be generated",
"Tag SegmentEditor has already been registered") from C++ straight to file descriptor 2, so
redirecting Python's ``sys.stderr`` alone would not catch them: :func:`log_to_file` points
descriptor 2 itself at the log for as long as the viewer runs, and Python's ``sys.stderr``
with it. The terminal keeps what a user needs: the lines the command prints through
:attr:`ViewLog.terminal` (where the log is, the URL) and one line per error logged while the
page is served (Python ``logging`` at ERROR and above, details in the log). On exit
``sys.stderr`` is the terminal again, so the command's own error messages reach it; with
``until_exit`` descriptor 2 stays on the log for the rest of the process (the command: VTK
and Slicer still warn while the scene is torn down after the server stops), otherwise it is
restored too.

The log is ``view.log`` in the folder being viewed (appended; one header line per session):
it sits next to the result it is about, and the viewer already writes there (saved
versions, DICOM exports) without touching the result's own files. A folder where it cannot
be written (read-only, or ``view.log`` not a file) gets a log in the temporary folder
instead; the terminal says which.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

LOG_NAME = "view.log"


@dataclass
class ViewLog:
    """The open log (``path``) and a text stream to the real terminal (``terminal``)."""

    path: Path
    terminal: TextIO


def open_log(folder: str | os.PathLike) -> tuple[Path, TextIO]:
    """``folder/view.log`` opened for appending, or a new temporary log file when that fails."""
    path = Path(folder) / LOG_NAME
    try:
        return path, open(path, "a", encoding="utf-8", buffering=1)  # closed by log_to_file
    except OSError:
        fd, name = tempfile.mkstemp(prefix="brainmetseg-view-", suffix=".log")
        return Path(name), os.fdopen(fd, "a", encoding="utf-8", buffering=1)


class _OneLine(logging.Formatter):
    def __init__(self, log: Path):
        super().__init__()
        self.log = log

    def format(self, record: logging.LogRecord) -> str:
        first = (record.getMessage().strip().splitlines() or [record.levelname])[0][:300]
        return f"brainmetseg view: error: {first} (details in {self.log})"


@contextlib.contextmanager
def log_to_file(folder: str | os.PathLike, until_exit: bool = False) -> Iterator[ViewLog]:
    """Send descriptor 2 and ``sys.stderr`` to the viewer's log while inside (descriptor 2 until
    the process ends with ``until_exit``); yields a :class:`ViewLog` whose ``terminal``
    writes to the original stderr."""
    path, log = open_log(folder)
    log.write(f"=== brainmetseg view {Path(folder).resolve()} (pid {os.getpid()}) "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    getattr(sys.stderr, "flush", lambda: None)()
    saved_fd = os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                         errors="replace", buffering=1)
    saved_stderr = sys.stderr
    on_terminal = logging.StreamHandler(terminal)
    on_terminal.setLevel(logging.ERROR)
    on_terminal.setFormatter(_OneLine(path))
    in_log = logging.StreamHandler(log)  # the whole record, traceback included
    in_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    try:
        os.dup2(log.fileno(), 2)
        sys.stderr = log
        root.addHandler(on_terminal)
        root.addHandler(in_log)
        yield ViewLog(path, terminal)
    finally:
        if until_exit:  # the log, its handlers and the terminal stream live as long as the process
            sys.stderr = terminal
            os.close(saved_fd)
        else:
            _restore(root, (on_terminal, in_log), saved_stderr, saved_fd, terminal, log)


def _restore(root, handlers, saved_stderr, saved_fd: int, terminal, log) -> None:
    for handler in handlers:
        root.removeHandler(handler)
    sys.stderr = saved_stderr
    with contextlib.suppress(OSError, ValueError):
        log.flush()
    os.dup2(saved_fd, 2)
    os.close(saved_fd)
    terminal.close()
    log.close()
