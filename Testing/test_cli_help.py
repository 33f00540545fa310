"""`brainmetseg --help`: every command listed with a one-line description beside its name."""

from __future__ import annotations

import argparse
import re

import pytest

from BrainMetSegLib.cli import COMMANDS, build_parser, main


def subcommands(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    """name -> the help text argparse holds for it, for every sub-command the parser accepts."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return {name: helps.get(name) for name in action.choices}


@pytest.mark.parametrize("columns", ["80", "60"])
def test_every_command_has_a_one_line_description(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    commands = subcommands(build_parser(()))
    assert set(commands) == set(COMMANDS)
    for name, summary in commands.items():
        assert summary and summary.strip(), f"{name} has no description"
        (line,) = [li for li in lines if re.match(rf"^\s+{re.escape(name)}\b", li)]
        # the name and its description on one line; at 80 columns the whole description
        described = line.split(name, 1)[1].strip()
        assert described, f"{name}: description not on the name's line:\n" + "\n".join(lines)
        if columns == "80":
            assert described == summary and len(line) <= 80, line
    # every command's own --help starts with its description
    for name, (_, description) in COMMANDS.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert " ".join(description.split()[:4]) in " ".join(capsys.readouterr().out.split())
