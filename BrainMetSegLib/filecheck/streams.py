"""Reading what a header declares: data streams (raw, gzip, zlib, bzip2) read to their end, text
header lines and their numeric fields, and the "truncated" problem when data falls short."""

from __future__ import annotations

import bz2
import re
import zlib
from pathlib import Path

from .findings import FileProblem


def read_stream(path: Path, codec: str, offset: int = 0, limit: int | None = None) -> bytes:
    """All bytes of ``path`` from ``offset`` (``limit`` bytes at most), decoded by ``codec``
    (``raw``, ``gzip``, ``zlib``, ``bzip2``); :class:`FileProblem` when a compressed stream is
    corrupt or ends before its end-of-stream marker (a cut file)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read() if limit is None else fh.read(limit)
    if codec == "raw":
        return raw
    try:
        if codec == "gzip":
            return gunzip(raw)
        if codec == "bzip2":
            return bz2.decompress(raw)
        d = zlib.decompressobj(47)  # zlib or gzip header, as MetaIO writes
        out = d.decompress(raw)
        if not d.eof:
            raise EOFError("compressed stream ended before the end-of-stream marker")
        return out
    except EOFError:
        raise FileProblem(f"the {codec} stream ends early: the file was cut short (truncated)") from None
    except (OSError, zlib.error, ValueError) as exc:
        raise FileProblem(f"the {codec} stream is corrupt ({exc})") from None


def gunzip(raw: bytes) -> bytes:
    """Every member of a gzip file, CRC and length checked by zlib; trailing zero padding (left
    by some copy tools, ignored by ITK's zlib reader) is accepted."""
    out, data = [], raw
    while data:
        d = zlib.decompressobj(31)
        out.append(d.decompress(data))
        if not d.eof:
            raise EOFError("gzip stream ended before the end-of-stream marker")
        data = d.unused_data
        if not data.strip(b"\0"):
            break
    return b"".join(out)


def truncation(declared: int, present: int, what: str) -> FileProblem:
    """The problem (to raise) of ``present`` bytes of ``what`` where the header declares ``declared``."""
    return FileProblem(f"truncated: the header declares {declared:,} bytes of {what} but only "
                       f"{present:,} are present ({100 * present / max(declared, 1):.0f} %)")


def read_text_header(path: Path, end: re.Pattern, limit: int = 1 << 22) -> tuple[list[str], int]:
    """Header lines of a text-header format up to the line matching ``end`` (included) and the
    byte length of the header; (lines, -1) when no line matches within ``limit`` bytes. Read
    in 64 kB steps: a Slicer ``.seg.nrrd`` carries ~0.4 kB of fields per segment."""
    lines, pos, rest = [], 0, b""
    with open(path, "rb") as fh:
        while pos < limit:
            chunk = fh.read(1 << 16)
            rest += chunk
            parts = rest.splitlines(keepends=True)
            # a last line without its "\n" is finished by the next chunk (or by the file's end):
            # a "\r\n" cut in two must not read as an empty line
            rest = parts.pop() if chunk and parts and not parts[-1].endswith(b"\n") else b""
            for raw in parts:
                pos += len(raw)
                lines.append(raw.decode("latin-1").rstrip("\r\n"))
                if end.match(lines[-1]):
                    return lines, pos
            if not chunk:
                break
    return lines, -1


def header_int(text: str, name: str) -> int:
    """Header field ``name``'s value ``text`` as an integer; :class:`FileProblem` if it is not one."""
    try:
        return int(text)
    except ValueError:
        raise FileProblem(f"header field {name} = {text!r} is not an integer") from None


def header_numbers(text: str, name: str) -> list[float]:
    """Header field ``name``'s value ``text`` as numbers (space-separated); :class:`FileProblem` if not."""
    try:
        return [float(v) for v in text.split()]
    except ValueError:
        raise FileProblem(f"header field {name} = {text!r} is not a list of numbers") from None
