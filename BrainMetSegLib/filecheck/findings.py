"""What a file check reports: a problem that stops the read, or doubts about the header."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class FileProblem(Exception):
    """A file is damaged or unsafe to open; the message says what (the caller names the file)."""


@dataclass
class HeaderFindings:
    """untrusted: header fields that make orientation/spacing a guess (one sentence each).
    sform_ras: a NIfTI file's sform (4 x 4, voxel index (i, j, k) -> RAS mm) when its
    sform_code > 0: where every tool that reads the sform places the voxels, to compare with
    the geometry ITK built (:func:`BrainMetSegLib.filecheck.nifti.sform_disagreement`)."""

    untrusted: list[str] = field(default_factory=list)
    sform_ras: np.ndarray | None = None
