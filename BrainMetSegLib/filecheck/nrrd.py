"""NRRD files (.nrrd, .nhdr + data file): data present, axis vectors or spacings, a stored
orientation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .entries import require_regular
from .findings import FileProblem, HeaderFindings
from .streams import header_int, header_numbers, read_stream, read_text_header, truncation

NRRD_SIZES = {}
for _n, _names in {
    1: "char signed_char int8 int8_t uchar unsigned_char uint8 uint8_t",
    2: "short short_int signed_short signed_short_int int16 int16_t ushort unsigned_short "
       "unsigned_short_int uint16 uint16_t",
    4: "int signed_int int32 int32_t uint unsigned_int uint32 uint32_t float",
    8: "longlong long_long long_long_int signed_long_long signed_long_long_int int64 int64_t ulonglong "
       "unsigned_long_long unsigned_long_long_int uint64 uint64_t double",
}.items():
    for _name in _names.split():
        NRRD_SIZES[_name.replace("_", " ")] = _n


def _vectors(text: str) -> list[list[float] | None]:
    """The ``space directions`` field: one vector (mm) per axis, None for a ``none`` axis."""
    out = []
    for token in re.findall(r"\([^)]*\)|none", text):
        out.append(None if token == "none" else header_numbers(token.strip("()").replace(",", " "), "space directions"))
    return out


def check_nrrd(path: Path, findings: HeaderFindings) -> None:
    """An NRRD header and its data (in the file or a detached one): :class:`FileProblem` when
    the data is shorter than declared; zero axes, spacings <= 0 or no space directions appended
    to ``findings``."""
    with open(path, "rb") as fh:
        if not fh.read(4) == b"NRRD":
            return  # not NRRD: ITK decides
    lines, header_len = read_text_header(path, re.compile(r"^$"))
    fields = {}
    for line in lines[1:]:
        if ":" in line and not line.startswith("#") and ":=" not in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    detached = fields.get("data file") or fields.get("datafile")
    if header_len < 0 and not detached:
        raise FileProblem("truncated: the NRRD header has no blank line ending it")
    if "space directions" in fields:
        for i, vec in enumerate(_vectors(fields["space directions"])):
            if vec is not None and not (np.isfinite(vec).all() and np.linalg.norm(vec) > 0):
                findings.untrusted.append(f"NRRD header field space directions[{i}] = {vec} "
                                          "(a zero or non-finite axis)")
    else:
        for i, s in enumerate(header_numbers(fields.get("spacings", "").replace("nan", ""), "spacings")):
            if not (math.isfinite(s) and s > 0):
                findings.untrusted.append(f"NRRD header field spacings[{i}] = {s:g} (must be > 0)")
        findings.untrusted.append("NRRD header has no space directions field: no orientation is "
                                  "stored, so left/right is a guess")
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError:
        raise FileProblem(f"header field sizes = {fields.get('sizes')!r} is not a list of integers") from None
    item = NRRD_SIZES.get(" ".join(fields.get("type", "").lower().split()))
    encoding = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}.get(
        fields.get("encoding", "").lower())
    skip = header_int(fields.get("byte skip", fields.get("byteskip", "0")) or "0", "byte skip")
    if not sizes or item is None or encoding is None or any(s < 1 for s in sizes):
        return
    if detached:
        if detached.upper().startswith("LIST") or "%" in detached or " " in detached:
            return
        data_path = path.parent / detached
        require_regular(data_path, f"data file {data_path} named by the NRRD header")
        offset = 0
    else:
        data_path, offset = path, header_len
    declared = math.prod(sizes) * item
    if encoding == "raw" and skip == -1:
        present = data_path.stat().st_size - offset
    elif encoding == "raw":
        present = data_path.stat().st_size - offset - max(skip, 0)
    else:
        present = len(read_stream(data_path, encoding, offset)) - max(skip, 0)
    if present < declared:
        where = "" if data_path == path else f" in {data_path.name}"
        raise truncation(declared, max(present, 0), f"voxel data{where}")
