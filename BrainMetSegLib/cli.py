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

COMMANDS = {
    "segment": "segment metastases on CE-T1 scans: label map, probability map, lesion table",
    "synth": "write synthetic CE-T1 phantoms with metastases and exact ground truth",
    "train": "train a model package on labelled scans (nnU-Net raw layout or CSV manifest)",
    "evaluate": "compare predictions with ground truth: voxel- and lesion-wise metrics, report",
    "compare": "follow lesions from a baseline through follow-up scans: matching, table, RANO-BM",
    "models": "list the known model packages and their cards",
    "view": "review and correct a result in a web browser (Slicer's views; needs the [web] extra)",
    "summarize": "merge a cohort run's per-case results (all shards) into one table; list missing cases",
}


def build_parser(with_commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainmetseg",
        description="Find, outline and measure brain metastases on contrast-enhanced T1 MRI.",
    )
    parser.add_argument("--version", action="version", version=f"brainmetseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
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
    if getattr(args, "progress", None) == "json":
        from .progress import error_json

        print(error_json(exc), flush=True)


if __name__ == "__main__":
    sys.exit(main())
