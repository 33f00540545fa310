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

from .entries import check_folder_entries, file_kind, require_regular
from .findings import FileProblem, HeaderFindings
from .metaimage import check_metaimage
from .nifti import check_analyze_pair, check_nifti, sform_disagreement
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

