"""The ``brainmetseg`` command: one sub-command per job.

Each sub-command lives in ``BrainMetSegLib.commands.<name>`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their command runs, so ``brainmetseg --help`` is fast. User errors
(:class:`~BrainMetSegLib.errors.BrainMetSegError`) are printed without a traceback
and give the error type's exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import BrainMetSegError

COMMANDS = {
    "segment": "segment metastases on CE-T1 scans: label map, probability map, lesion table",
    "synth": "write synthetic CE-T1 phantoms with metastases and exact ground truth",
    "train": "train a model package on labelled scans (nnU-Net raw layout or CSV manifest)",
    "evaluate": "compare predictions with ground truth: voxel- and lesion-wise metrics, report",
    "compare": "follow lesions from a baseline through follow-up scans: matching, table, RANO-BM",
    "models": "list the known model packages and their cards",
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
    try:
        return int(args._run(args) or 0)
    except BrainMetSegError as exc:
        print(f"brainmetseg {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"brainmetseg {args.command}: cancelled.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
