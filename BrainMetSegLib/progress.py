"""Progress events: a stream of (stage, fraction, message) from long work.

The pipeline calls a ``ProgressCallback``; the CLI renders events as a tqdm bar or
as JSON lines (``--progress json``) that the Slicer module parses with
:func:`parse_progress_line`; with ``--progress json`` an error is a JSON ``error``
object too (:func:`error_json`, :func:`parse_error_line`), so no reader has to
interpret the text of a message. Cancellation is a ``threading.Event`` checked
between stages and between sliding windows.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from .errors import ERROR_TYPES, BrainMetSegError, CancelledError
from .options import ProgressMode, as_option


class Stage(StrEnum):
    """Machine names of the stages that report progress (also the keys of ``timings_s``)."""

    READ = "read"
    COREGISTER = "coregister"
    PREPROCESS = "preprocess"
    LOAD_MODEL = "load_model"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    EVALUATE = "evaluate"
    SYNTH = "synth"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    stage: short machine name of the stage (``read``, ``preprocess``, ``inference``...).
    fraction: overall completion of the stage in [0, 1].
    message: human-readable text.
    """

    stage: str
    fraction: float
    message: str = ""

    def to_json(self) -> str:
        return json.dumps({"type": "progress", **asdict(self)})


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """A callback that ignores every event."""


def json_lines(stream=None) -> ProgressCallback:
    """Callback that writes one JSON object per line and flushes (for subprocess readers)."""

    def emit(event: ProgressEvent) -> None:
        out = stream or sys.stdout
        out.write(event.to_json() + "\n")
        out.flush()

    return emit


def stage_lines(stream=None, every_s: float = 30.0) -> ProgressCallback:
    """Callback for logs (stderr not a terminal): plain lines, never carriage-return frames.

    One line when a stage finishes; a stage that reports its progress (sliding windows)
    also gets a line at most every ``every_s`` seconds, so a long stage is seen to move.
    """
    state = {"stage": None, "last": 0.0}

    def emit(event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.stage != state["stage"]:
            state["stage"], state["last"] = event.stage, now
        if event.fraction >= 1.0:
            state["stage"] = None  # a later event of the same name starts a new stage
        elif now - state["last"] < every_s:
            return
        state["last"] = now
        pct = "" if event.fraction >= 1.0 else f" {100 * max(event.fraction, 0.0):3.0f}%"
        out = stream or sys.stderr
        out.write(f"{time.strftime('%H:%M:%S')} {event.stage}{pct}: {event.message}\n")
        out.flush()

    return emit


def tqdm_bar() -> ProgressCallback:
    """Callback that renders events as one tqdm bar per stage on stderr.

    When stderr is not a terminal (a batch job's log file, a pipe) the bar's
    carriage-return frames would fill the log, so :func:`stage_lines` is used instead.
    """
    if not sys.stderr.isatty():
        return stage_lines()
    from tqdm import tqdm

    state: dict = {"stage": None, "bar": None, "closed": None}

    def emit(event: ProgressEvent) -> None:
        if event.stage == state["closed"] and event.fraction >= 1.0:
            return  # the stage's own "done" after its last step already closed the bar
        if event.stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"] = event.stage
            state["bar"] = tqdm(total=100, desc=event.stage, unit="%", leave=False, disable=None,
                                bar_format="{desc:>12}: {percentage:3.0f}%|{bar}| {postfix}")
        bar = state["bar"]
        bar.n = round(100 * min(max(event.fraction, 0.0), 1.0))
        bar.set_postfix_str(event.message, refresh=False)
        bar.refresh()
        if event.fraction >= 1.0:
            bar.close()
            state["stage"], state["bar"], state["closed"] = None, None, event.stage

    def close() -> None:
        """Clear an unfinished bar (a stage that failed), so an error starts a clean line."""
        if state["bar"] is not None:
            state["bar"].close()
        state["stage"], state["bar"] = None, None

    emit.close = close
    return emit


def parse_json_line(line: str, kind: str) -> dict | None:
    """The JSON object of a ``--progress json`` line whose ``type`` is ``kind``; None otherwise."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and obj.get("type") == kind else None


def reporter(mode: ProgressMode | str, quiet: bool = False) -> ProgressCallback:
    """The callback a command's ``--progress`` names (a :class:`~BrainMetSegLib.options.ProgressMode`:
    ``bar``, ``json`` or ``none``); ``quiet`` silences it. The one place that choice is made."""
    mode = as_option(ProgressMode, mode, "--progress")
    if quiet or mode == ProgressMode.NONE:
        return no_progress
    return json_lines() if mode == ProgressMode.JSON else tqdm_bar()


def parse_progress_line(line: str) -> ProgressEvent | None:
    """Parse one line printed with ``--progress json``; None for any other line."""
    obj = parse_json_line(line, "progress")
    if obj is None:
        return None
    try:
        return ProgressEvent(str(obj["stage"]), float(obj["fraction"]), str(obj.get("message", "")))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ErrorReport:
    """A user error as the CLI reports it with ``--progress json``.

    kind: the exception type's name (a key of :data:`~BrainMetSegLib.errors.ERROR_TYPES`).
    case: the case it concerns in a batch run ("" for the run as a whole).
    """

    kind: str
    message: str
    exit_code: int
    case: str = ""


def error_json(exc: BrainMetSegError, case: str = "") -> str:
    """The JSON ``error`` line for a user error (one line, for subprocess readers)."""
    # A private subclass (a stale batch case, an unbelievable run record) is named by the
    # public kind it belongs to, so readers of this line know every kind they can receive.
    kind = next(c.__name__ for c in type(exc).__mro__ if ERROR_TYPES.get(c.__name__) is c)
    return json.dumps({"type": "error", "kind": kind, "message": str(exc),
                       "exit_code": exc.exit_code, "case": case})


def parse_error_line(line: str) -> ErrorReport | None:
    """Parse a JSON ``error`` line (see :func:`error_json`); None for any other line."""
    obj = parse_json_line(line, "error")
    if obj is None or obj.get("kind") not in ERROR_TYPES:
        return None
    try:
        return ErrorReport(str(obj["kind"]), str(obj["message"]), int(obj["exit_code"]),
                           str(obj.get("case") or ""))
    except (KeyError, TypeError, ValueError):
        return None


def check_cancelled(cancel: threading.Event | None) -> None:
    """Raise :class:`CancelledError` when ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("Cancelled by the user.")
