"""MetaImage files (.mha, .mhd + data file): data present, voxel sizes."""

from __future__ import annotations

import math
import re
from pathlib import Path

from .entries import require_regular
from .findings import FileProblem, HeaderFindings
from .streams import header_int, header_numbers, read_stream, read_text_header, truncation

MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
             "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
             "MET_FLOAT": 4, "MET_DOUBLE": 8}


def check_metaimage(path: Path, findings: HeaderFindings) -> None:
    """A MetaImage header and its data (in the file or a detached one): :class:`FileProblem`
    when the data is shorter than declared; spacings <= 0 appended to ``findings``."""
    lines, header_len = read_text_header(path, re.compile(r"\s*ElementDataFile\s*=", re.I))
    fields = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip().lower()] = value.strip()
    if "elementdatafile" not in fields:
        if path.suffix.lower() == ".mha" and "ndims" in fields:
            raise FileProblem("truncated: the MetaImage header has no ElementDataFile line")
        return  # not a MetaImage header: ITK decides
    spacing_key = "elementspacing" if "elementspacing" in fields else "elementsize"
    if spacing_key in fields:
        for i, s in enumerate(header_numbers(fields[spacing_key], "ElementSpacing")):
            if not (math.isfinite(s) and s > 0):
                findings.untrusted.append(f"MetaImage header field ElementSpacing[{i}] = {s:g} (a voxel "
                                          "size must be > 0; a negative one mirrors the image)")
    try:
        dims = [int(v) for v in fields.get("dimsize", "").split()]
    except ValueError:
        raise FileProblem(f"header field DimSize = {fields.get('dimsize')!r} is not a list of integers") from None
    size = MET_SIZES.get(fields.get("elementtype", "").upper())
    if not dims or size is None or any(d < 1 for d in dims):
        return
    channels = header_int(fields.get("elementnumberofchannels", "1") or "1", "ElementNumberOfChannels")
    declared = math.prod(dims) * size * channels
    compressed = fields.get("compresseddata", "false").lower() == "true"
    target = fields["elementdatafile"]
    if target.upper() == "LOCAL":
        data_path, offset = path, header_len
    elif target.upper() == "LIST" or "%" in target or " " in target:
        return  # slice lists: ITK reads and checks them
    else:
        data_path = path.parent / target
        require_regular(data_path, f"data file {data_path} named by ElementDataFile")
        offset = max(header_int(fields.get("headersize", "0") or "0", "HeaderSize"), 0)
    if compressed:
        present = len(read_stream(data_path, "zlib", offset))
    else:
        present = data_path.stat().st_size - offset
        if fields.get("headersize", "0").strip() == "-1":
            present = data_path.stat().st_size
    if present < declared:
        where = "" if data_path == path else f" in {data_path.name}"
        raise truncation(declared, max(present, 0), f"voxel data{where}")
