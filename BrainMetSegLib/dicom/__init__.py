"""DICOM export of a segmentation: SEG and SR (highdicom), RTSTRUCT (pydicom + scikit-image).

- :mod:`.reference`: read and check the source series; put a label map on its slices.
- :mod:`.seg`, :mod:`.sr`, :mod:`.rtstruct`: build one object each.
- :mod:`.export`: :func:`export_dicom` (any label map + lesion table, e.g. from the Slicer
  module after edits) and :func:`plan_export` (what ``segment --dicom`` does).

Needs the ``dicom`` extra (highdicom, pydicom); imported only when an export is asked for.
"""

from .export import DICOM_KINDS, OUTPUT_NAMES, DicomExport, export_dicom, parse_kinds, plan_export
from .identity import ModelIdentity, operating_parameters, weights_sha256
from .reference import ReferenceSeries, check_lattice, labels_on_reference, read_reference_series

__all__ = [
    "DICOM_KINDS", "OUTPUT_NAMES", "DicomExport", "ModelIdentity", "ReferenceSeries", "check_lattice",
    "export_dicom", "labels_on_reference", "operating_parameters", "parse_kinds", "plan_export",
    "read_reference_series", "weights_sha256",
]
