"""Reading the library's text inputs: JSON objects (cards, records) and CSV tables (manifests)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .errors import InputError
from .filecheck import FileProblem, require_regular


def read_json_object(path: str | os.PathLike, what: str, error: type[Exception] = InputError) -> dict:
    """The JSON object in a UTF-8 file; ``error`` naming the file (and ``what`` it is) when the
    text is not valid JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc}).") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc}).") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object.")
    return data


def read_csv_rows(path: str | os.PathLike, what: str = "manifest") -> list[dict[str, str]]:
    """Rows of a CSV file with a header (UTF-8, BOM allowed); :class:`InputError` naming the
    file when it is missing or has no rows. ``what`` names the file in messages."""
    p = Path(path)
    try:
        require_regular(p, what)
        raw = p.read_bytes()
    except FileProblem as exc:
        raise InputError(f"{p}: {exc}.") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {what} ({exc.strerror}).") from None
    if b"\0" in raw:
        raise InputError(f"{p}: the {what} is a binary file, not a CSV text file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: the {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8 CSV.") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{p}: the {what} is not valid CSV ({exc}).") from None
    if not rows:
        raise InputError(f"{p}: {what} has no rows.")
    return rows
