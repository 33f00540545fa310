"""Reading the CLI subprocess' output: progress lines, the final result line, errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EXIT_CODE_MEANINGS
from ..progress import (
    ErrorReport,
    ProgressEvent,
    Stage,
    parse_error_line,
    parse_json_line,
    parse_progress_line,
)


@dataclass(frozen=True)
class RunResult:
    """The CLI's final ``{"type": "result", ...}`` line."""

    case: str
    outputs: dict[str, str]
    lesions: int
    warnings: tuple[str, ...] = ()


def parse_result_line(line: str) -> RunResult | None:
    """Parse the final result line printed with ``--progress json``; None for other lines."""
    obj = parse_json_line(line, "result")
    if obj is None:
        return None
    outputs = obj.get("outputs")
    if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
        return None
    try:
        lesions = int(obj.get("lesions", 0))
    except (TypeError, ValueError):
        return None
    warnings = obj.get("warnings") or []
    warnings = tuple(str(w) for w in warnings) if isinstance(warnings, list) else ()
    return RunResult(str(obj.get("case", "")), dict(outputs), lesions, warnings)


# Weights of the pipeline's stages in the overall progress bar (inference dominates);
# stages not listed count as "other".
STAGE_WEIGHTS = {Stage.READ: 0.03, Stage.COREGISTER: 0.07, Stage.PREPROCESS: 0.15, Stage.LOAD_MODEL: 0.03,
                 Stage.INFERENCE: 0.6, Stage.POSTPROCESS: 0.07}
OTHER_STAGE_WEIGHT = 0.03


@dataclass
class OutputMonitor:
    """Accumulates the subprocess' stdout/stderr lines into progress, results and errors.

    errors: the CLI's JSON ``error`` objects (a failed batch case carries its ``case``).

    Overall progress is monotonic: finished stages add their weight, the current
    stage adds weight * fraction.
    """

    result: RunResult | None = None
    results: list[RunResult] = field(default_factory=list)
    errors: list[ErrorReport] = field(default_factory=list)
    last_event: ProgressEvent | None = None
    log: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _done: dict[str, float] = field(default_factory=dict)
    _overall: float = 0.0

    def feed_stdout(self, line: str) -> ProgressEvent | RunResult | ErrorReport | None:
        line = line.rstrip("\r\n")
        event = parse_progress_line(line)
        if event is not None:
            self._advance(event)
            return event
        result = parse_result_line(line)
        if result is not None:
            self.result = result
            self.results.append(result)
            self._overall = 1.0
            return result
        error = parse_error_line(line)
        if error is not None:
            self.errors.append(error)
            return error
        if line.strip():
            self.log.append(line)
        return None

    def feed_stderr(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if line.strip():
            self.stderr.append(line)
            self.log.append(line)

    def _advance(self, event: ProgressEvent) -> None:
        self.last_event = event
        frac = min(max(event.fraction, 0.0), 1.0)
        self._done[event.stage] = max(self._done.get(event.stage, 0.0), frac)
        total = sum(STAGE_WEIGHTS.get(s, OTHER_STAGE_WEIGHT) * f for s, f in self._done.items())
        norm = sum(STAGE_WEIGHTS.values())
        self._overall = max(self._overall, min(total / norm, 0.99))

    @property
    def overall_fraction(self) -> float:
        """Overall completion in [0, 1] (1 only once the result line arrived)."""
        return self._overall

    @property
    def status_text(self) -> str:
        if self.result is not None:
            return f"Done: {self.result.lesions} lesion(s) found."
        if self.last_event is None:
            return "Starting..."
        e = self.last_event
        return f"{e.stage}: {e.message}" if e.message else e.stage

    def error_message(self, returncode: int | None) -> str:
        """The library's own message for a failed run (its last JSON ``error`` object), else
        the last stderr line (e.g. a traceback's exception), else the exit code's meaning."""
        if self.errors:
            return self.errors[-1].message
        if self.stderr:
            return self.stderr[-1].strip()
        meaning = EXIT_CODE_MEANINGS.get(returncode or 0)
        if returncode is None:
            return "the segmentation process did not finish"
        if returncode == 0 and self.result is None:
            return "the segmentation process ended without reporting its results"
        return f"the segmentation process failed with exit code {returncode}" + (
            f" ({meaning})" if meaning else "")
