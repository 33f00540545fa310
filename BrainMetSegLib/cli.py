"""The ``brainmetseg`` command: one sub-command per job.

Each sub-command lives in ``BrainMetSegLib.commands.<name>`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their command runs, so ``brainmetseg --help`` is fast. User errors
(:class:`~BrainMetSegLib.errors.BrainMetSegError`) are printed without a traceback
and give the error type's exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

from . import __version__
from .errors import BrainMetSegError, CancelledError
from .options import ProgressMode

# name -> (one-line summary for `brainmetseg --help`, fits an 80-column terminal beside the
# name; description heading `brainmetseg NAME --help`)
COMMANDS = {
    "segment": ("find, outline and measure metastases on CE-T1 scans",
                "segment metastases on CE-T1 scans: label map, probability map, Slicer segmentation, "
                "lesion table"),
    "synth": ("write synthetic CE-T1 phantoms with exact ground truth",
              "write synthetic CE-T1 phantoms with metastases and exact ground truth"),
    "train": ("train a model package on labelled scans",
              "train a model package on labelled scans (nnU-Net raw layout or CSV manifest)"),
    "evaluate": ("score predictions against ground truth",
                 "compare predictions with ground truth: voxel- and lesion-wise metrics, report"),
    "compare": ("follow lesions through follow-up scans (RANO-BM)",
                "follow lesions from a baseline through follow-up scans: matching, table, RANO-BM"),
    "models": ("list, download or import model packages",
               "list the known model packages and their cards; download one; import one "
               "(brainmetseg models import --help)"),
    "view": ("review and correct a result in a web browser",
             "review and correct a result in a web browser (Slicer's views; needs the [web] extra)"),
    "summarize": ("merge a cohort run's results into one table",
                  "merge a cohort run's per-case results (all shards) into one table; list missing cases"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse measures sub-command names two columns short of where it prints them, so the
    longest (``summarize``) got its summary on the next line, as if it had none: widen the
    name column by those two columns."""

    def add_argument(self, action):
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS and hasattr(action, "_get_subactions"):
            for sub in action._get_subactions():
                width = len(self._format_action_invocation(sub)) + self._current_indent + 2
                self._action_max_length = max(self._action_max_length, width)


def build_parser(with_commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainmetseg",
        description="Find, outline and measure brain metastases on contrast-enhanced T1 MRI.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"brainmetseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, description) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=description)
        if with_commands is None or name in with_commands:
            module = importlib.import_module(f".commands.{name}", __package__)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    wanted = (command,) if command in COMMANDS else ()
    parser = build_parser(wanted)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    with _sigterm_cancels():
        try:
            return int(args._run(args) or 0)
        except BrainMetSegError as exc:
            print(f"brainmetseg {args.command}: error: {exc}", file=sys.stderr)
            _report_json(args, exc)
            return exc.exit_code
        except KeyboardInterrupt:
            print(f"brainmetseg {args.command}: cancelled.", file=sys.stderr)
            _report_json(args, CancelledError("cancelled."))
            return CancelledError.exit_code
        except Exception as exc:  # a bug, not a user error: one line, the traceback on request
            if os.environ.get("BRAINMETSEG_DEBUG"):
                raise
            print(f"brainmetseg {args.command}: internal error ({type(exc).__name__}: "
                  f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}); this is a bug - "
                  "rerun with BRAINMETSEG_DEBUG=1 for the traceback and report it.", file=sys.stderr)
            return 70


@contextlib.contextmanager
def _sigterm_cancels():
    """SIGTERM (Slicer's Cancel, a batch system) ends a run like Ctrl-C does: the exception
    unwinds through every ``finally``, so temporary files are removed and the output-folder
    lock is released. Only the main thread can install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum, frame):
        raise CancelledError("terminated (SIGTERM); partial outputs were removed.")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_json(args, exc: BrainMetSegError) -> None:
    """With ``--progress json`` the error is also a JSON ``error`` object on stdout, so a
    reader (the Slicer module) gets its kind and message without parsing text."""
    if getattr(args, "progress", None) == ProgressMode.JSON:
        from .progress import error_json

        print(error_json(exc), flush=True)


if __name__ == "__main__":
    sys.exit(main())
