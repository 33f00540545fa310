"""What ITK does not check in an image file: completeness, trustworthy geometry, representable values.

ITK reads a NIfTI cut short with the missing voxels set to 0, turns NaN into 0, takes a
negative or zero ``pixdim`` as a spacing and guesses an orientation when a header has none,
all without a word. This module reads the header (and the data stream) itself, before
ITK does, and reports:

- **damage**: the data present is shorter than the header declares (raw file, gzip/zlib/bzip2
  stream ended early or corrupt, a detached data file missing or short);
- **untrusted geometry**: a header field that makes orientation or spacing a guess (NIfTI
  ``pixdim[i] <= 0``, ``qform_code = sform_code = 0``, a singular sform; MetaImage/NRRD
  spacing <= 0; NRRD without ``space directions``), each named by its field;
- **values**: NaN/Inf in NIfTI float data (ITK zeroes them), complex data.

Special files (named pipes, devices) are refused before anything opens them: reading a
FIFO blocks forever. The same completeness check verifies files this library writes.
Formats covered: NIfTI-1/2 (.nii, .nii.gz, .hdr/.img pairs), Analyze 7.5 (orientation
untrusted), MetaImage (.mha, .mhd + data file), NRRD (.nrrd, .nhdr + data file); DICOM
folders are checked for special files.
"""

from __future__ import annotations

import bz2
import math
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHUNK = 1 << 22


class FileProblem(Exception):
    """A file is damaged or unsafe to open; the message says what (the caller names the file)."""


@dataclass
class HeaderFindings:
    """untrusted: header fields that make orientation/spacing a guess (one sentence each)."""

    untrusted: list[str] = field(default_factory=list)


def file_kind(path: Path) -> str:
    """``"file"``, ``"folder"``, ``"missing"`` or a special kind (``"named pipe"``, ``"device"``, ...),
    from ``lstat``/``stat`` only: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable entry ({exc.strerror})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def require_regular(path: Path, what: str) -> None:
    """:class:`FileProblem` unless ``path`` is a regular file (nothing is opened)."""
    kind = file_kind(path)
    if kind == "missing":
        raise FileProblem(f"{what} not found")
    if kind != "file":
        raise FileProblem(f"{what} is a {kind}, not a regular file; refusing to open it")


def check_folder_entries(folder: Path) -> None:
    """A DICOM folder must not hold special files (GDCM would open them and could block)."""
    for entry in os.scandir(folder):
        kind = file_kind(Path(entry.path))
        if kind not in ("file", "folder"):
            raise FileProblem(f"holds {entry.name!r}, a {kind}; refusing to read the folder")


# --- streams -----------------------------------------------------------------------------------

def _read_stream(path: Path, codec: str, offset: int = 0, limit: int | None = None) -> bytes:
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
            return _gunzip(raw)
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


def _gunzip(raw: bytes) -> bytes:
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


def _short(declared: int, present: int, what: str) -> FileProblem:
    return FileProblem(f"truncated: the header declares {declared:,} bytes of {what} but only "
                       f"{present:,} are present ({100 * present / max(declared, 1):.0f} %)")


# --- NIfTI -------------------------------------------------------------------------------------

def _nifti_header(head: bytes):
    import nibabel as nib

    for cls, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        for order in "<>":
            if len(head) >= 4 and struct.unpack(order + "i", head[:4])[0] == size:
                if len(head) < size:
                    raise FileProblem(f"truncated: the file ends inside its {size}-byte NIfTI header")
                return cls.from_fileobj(_BytesIO(head[:size]), check=False)
    return None


def _BytesIO(b: bytes):
    import io

    return io.BytesIO(b)


def check_nifti(path: Path, findings: HeaderFindings, values: bool = True) -> None:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"  # by content: ITK reads either whatever the name says
    data = _read_stream(path, "gzip" if gz else "raw")
    hdr = _nifti_header(data[:540])
    if hdr is None:
        return  # not NIfTI-1/2 (e.g. Analyze): ITK decides
    dim = [int(d) for d in hdr["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1:ndim + 1]):
        raise FileProblem(f"invalid NIfTI header field dim = {dim[:ndim + 1] if 0 <= ndim <= 7 else dim}")
    try:
        dtype = hdr.get_data_dtype()
    except Exception:  # noqa: BLE001 - nibabel raises several types for unknown datatypes
        return  # unknown datatype: ITK decides (and reports)
    if dtype.kind == "c":
        raise FileProblem(f"holds complex-valued voxels (NIfTI datatype {dtype}); a real-valued "
                          "(magnitude) image is needed")
    count = math.prod(dim[1:ndim + 1])
    offset = int(hdr["vox_offset"]) if hdr["magic"] in (b"n+1", b"n+2") else None
    if offset is not None:
        declared = count * dtype.itemsize
        present = max(len(data) - offset, 0)
        if present < declared:
            raise _short(declared, present, f"voxel data ({'x'.join(map(str, dim[1:ndim + 1]))} {dtype})")
        if values and dtype.kind == "f":
            voxels = np.frombuffer(data, dtype, count, offset)
            bad = int(np.count_nonzero(~np.isfinite(voxels)))
            if bad:
                raise FileProblem(f"has {bad} NaN/Inf voxels (ITK would read them as 0); fix or "
                                  "mask them first")
    pixdim = [float(v) for v in hdr["pixdim"]]
    for i in range(1, min(ndim, 3) + 1):
        if not (math.isfinite(pixdim[i]) and pixdim[i] > 0):
            findings.untrusted.append(f"NIfTI header field pixdim[{i}] = {pixdim[i]:g} (a voxel size "
                                      "must be > 0; ITK would flip that axis for a negative one and use 1 mm for 0)")
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode == 0 and scode == 0:
        findings.untrusted.append("NIfTI header fields qform_code = sform_code = 0: no orientation is "
                                  "stored, so left/right is a guess")
    elif scode > 0 and qcode == 0:
        srow = np.array([hdr["srow_x"][:3], hdr["srow_y"][:3], hdr["srow_z"][:3]], float)
        if not np.isfinite(srow).all() or abs(np.linalg.det(srow)) < 1e-12:
            findings.untrusted.append("NIfTI header fields srow_x/srow_y/srow_z (sform) are singular or "
                                      "not finite")


# --- MetaImage ---------------------------------------------------------------------------------

MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
             "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
             "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _text_header(path: Path, end: re.Pattern, limit: int = 1 << 22) -> tuple[list[str], int]:
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


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FileProblem(f"header field {name} = {text!r} is not an integer") from None


def _numbers(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split()]
    except ValueError:
        raise FileProblem(f"header field {name} = {text!r} is not a list of numbers") from None


def check_metaimage(path: Path, findings: HeaderFindings) -> None:
    lines, header_len = _text_header(path, re.compile(r"\s*ElementDataFile\s*=", re.I))
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
        for i, s in enumerate(_numbers(fields[spacing_key], "ElementSpacing")):
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
    channels = _int(fields.get("elementnumberofchannels", "1") or "1", "ElementNumberOfChannels")
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
        offset = max(_int(fields.get("headersize", "0") or "0", "HeaderSize"), 0)
    if compressed:
        present = len(_read_stream(data_path, "zlib", offset))
    else:
        present = data_path.stat().st_size - offset
        if fields.get("headersize", "0").strip() == "-1":
            present = data_path.stat().st_size
    if present < declared:
        where = "" if data_path == path else f" in {data_path.name}"
        raise _short(declared, max(present, 0), f"voxel data{where}")


# --- NRRD --------------------------------------------------------------------------------------

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
    out = []
    for token in re.findall(r"\([^)]*\)|none", text):
        out.append(None if token == "none" else _numbers(token.strip("()").replace(",", " "), "space directions"))
    return out


def check_nrrd(path: Path, findings: HeaderFindings) -> None:
    with open(path, "rb") as fh:
        if not fh.read(4) == b"NRRD":
            return  # not NRRD: ITK decides
    lines, header_len = _text_header(path, re.compile(r"^$"))
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
        for i, s in enumerate(_numbers(fields.get("spacings", "").replace("nan", ""), "spacings")):
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
    skip = _int(fields.get("byte skip", fields.get("byteskip", "0")) or "0", "byte skip")
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
        present = len(_read_stream(data_path, encoding, offset)) - max(skip, 0)
    if present < declared:
        where = "" if data_path == path else f" in {data_path.name}"
        raise _short(declared, max(present, 0), f"voxel data{where}")


def check_analyze_pair(path: Path, findings: HeaderFindings) -> None:
    """A .hdr/.img pair: NIfTI-1 pair (magic ``ni1``) fields as :func:`check_nifti`; plain
    Analyze 7.5 stores no orientation at all; the .img must hold the declared data."""
    name = path.name
    stem = name[: -len(".gz")] if name.lower().endswith(".gz") else name
    gz = stem != name
    header = path.with_name(stem[:-4] + ".hdr" + (".gz" if gz else ""))
    image = path.with_name(stem[:-4] + ".img" + (".gz" if gz else ""))
    require_regular(header, f"header file {header}")
    require_regular(image, f"data file {image}")
    head = _read_stream(header, "gzip" if gz else "raw")
    hdr = _nifti_header(head)
    if hdr is None:
        return
    if hdr["magic"] not in (b"ni1", b"ni2"):
        findings.untrusted.append("Analyze 7.5 header (.hdr/.img without NIfTI magic): no orientation is "
                                  "stored, so left/right is a guess")
    else:
        check_nifti(header, findings, values=False)
    dim = [int(d) for d in hdr["dim"]]
    try:
        itemsize = hdr.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001 - unknown datatype: ITK decides
        return
    if 1 <= dim[0] <= 7:
        declared = math.prod(dim[1:dim[0] + 1]) * itemsize
        present = len(_read_stream(image, "gzip" if gz else "raw")) - max(int(hdr["vox_offset"]), 0)
        if present < declared:
            raise _short(declared, max(present, 0), f"voxel data in {image.name}")


def check_image_file(path: Path, values: bool = True) -> HeaderFindings:
    """Check an image file (not a DICOM folder) before ITK reads it; :class:`FileProblem` if
    damaged (or, with ``values``, holding NaN/Inf NIfTI voxels), findings for untrusted geometry."""
    require_regular(path, "image file")
    findings = HeaderFindings()
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        check_nifti(path, findings, values)
    elif name.endswith((".mha", ".mhd")):
        check_metaimage(path, findings)
    elif name.endswith((".nrrd", ".nhdr")):
        check_nrrd(path, findings)
    elif name.endswith((".hdr", ".img", ".hdr.gz", ".img.gz")):
        check_analyze_pair(path, findings)
    return findings
