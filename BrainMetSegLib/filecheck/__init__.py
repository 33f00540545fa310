"""What ITK does not check in an image file: completeness, trustworthy geometry, representable values.

ITK reads a NIfTI cut short with the missing voxels set to 0, turns NaN into 0, takes a
negative or zero ``pixdim`` as a spacing and guesses an orientation when a header has none,
all without a word. This package reads the header (and the data stream) itself, before
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

One module a job: ``entries`` (what a path is, from ``stat``), ``streams`` (data streams and
text header lines), ``nifti`` (NIfTI and .hdr/.img pairs), ``metaimage``, ``nrrd``;
``check_image_file`` here picks the check by the file's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .entries import check_folder_entries, file_kind, require_regular
from .findings import FileProblem, HeaderFindings
from .metaimage import check_metaimage
from .nifti import check_analyze_pair, check_nifti
from .nrrd import check_nrrd

__all__ = ["FileProblem", "HeaderFindings", "check_folder_entries", "check_image_file", "file_kind",
           "require_regular", "sform_disagreement"]


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
