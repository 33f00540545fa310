"""NIfTI-1/2 files and .hdr/.img pairs (NIfTI or plain Analyze 7.5): data present, finite
values, voxel sizes and a stored orientation."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np

from .entries import require_regular
from .findings import FileProblem, HeaderFindings
from .streams import read_stream, truncation


def _nifti_header(head: bytes):
    import nibabel as nib

    for cls, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        for order in "<>":
            if len(head) >= 4 and struct.unpack(order + "i", head[:4])[0] == size:
                if len(head) < size:
                    raise FileProblem(f"truncated: the file ends inside its {size}-byte NIfTI header")
                return cls.from_fileobj(io.BytesIO(head[:size]), check=False)
    return None


def check_nifti(path: Path, findings: HeaderFindings, values: bool = True) -> None:
    """A NIfTI-1/2 file (gzipped or not, by content): :class:`FileProblem` for an invalid ``dim``,
    complex voxels, data shorter than declared or (with ``values``) NaN/Inf float voxels; untrusted
    ``pixdim`` and orientation fields appended to ``findings``. Anything else: ITK decides."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"  # by content: ITK reads either whatever the name says
    data = read_stream(path, "gzip" if gz else "raw")
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
            raise truncation(declared, present, f"voxel data ({'x'.join(map(str, dim[1:ndim + 1]))} {dtype})")
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
    if scode > 0:
        sform = np.array([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"], [0, 0, 0, 1]], float)
        findings.sform_ras = sform if np.isfinite(sform).all() else None


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
    head = read_stream(header, "gzip" if gz else "raw")
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
        present = len(read_stream(image, "gzip" if gz else "raw")) - max(int(hdr["vox_offset"]), 0)
        if present < declared:
            raise truncation(declared, max(present, 0), f"voxel data in {image.name}")


#: Where ITK's geometry and a NIfTI sform may part (mm) before the file is untrusted: half the
#: smallest voxel, i.e. no voxel lands on another one.
SFORM_TOLERANCE_VOXELS = 0.5


def sform_disagreement(image, sform_ras: np.ndarray | None) -> str | None:
    """A sentence when ``image`` (as ITK built it, LPS) places its corner voxels more than half a
    voxel away from where the file's NIfTI sform (``sform_ras``, voxel -> RAS mm) puts them,
    else None. ITK uses the qform instead of an sform it cannot represent (sheared or with
    axes of unequal handedness, "unexpected scales in sform"), where nibabel, FSL, FreeSurfer,
    ANTs and most viewers use the sform: results would not lie over the scan in those tools."""
    if sform_ras is None:
        return None
    size, extra = image.GetSize()[:3], [0.0] * (image.GetDimension() - 3)  # a 1-volume 4D file: its first volume
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)],
                       float)
    itk = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist() + extra)[:3] for c in corners])
    sform = (corners @ sform_ras[:3, :3].T + sform_ras[:3, 3]) * [-1, -1, 1]  # RAS -> LPS
    gap = float(np.linalg.norm(itk - sform, axis=1).max())
    if gap <= SFORM_TOLERANCE_VOXELS * min(image.GetSpacing()[:3]):
        return None
    return (f"the NIfTI sform (srow_x/srow_y/srow_z) puts the image's corners up to {gap:.1f} mm from where "
            "ITK places them (ITK could not use a sheared or non-orthogonal sform and used the qform; "
            "most other tools use the sform, so results would not lie over the scan there)")
