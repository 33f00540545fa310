"""What a file check reports: a problem that stops the read, or doubts about the header."""

from __future__ import annotations

from dataclasses import dataclass, field


class FileProblem(Exception):
    """A file is damaged or unsafe to open; the message says what (the caller names the file)."""


@dataclass
class HeaderFindings:
    """untrusted: header fields that make orientation/spacing a guess (one sentence each)."""

    untrusted: list[str] = field(default_factory=list)
