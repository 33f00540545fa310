"""A scan's acquisition (slice spacing, in-plane spacing, obliquity) against the acquisitions a
model was trained and tested on (model card field ``acquisition``).

The card states, e.g. ``{"slice_thickness_mm": [1, 3], "in_plane_spacing_mm": [1, 1],
"obliquity_deg": 0}``. A scan outside those ranges still runs (a model cannot be proven wrong
on it), but the run says so with the numbers, in ``run.json`` ``warnings``, on stderr and in
the Slicer module and viewer, e.g. "slice spacing 7 mm; model brainmetseg-demo was tested on
slices of 1-3 mm": false lesions and missed thin ones are more likely there
(docs/robustness.md). The slice axis is the scan's coarsest one; its spacing stands for the
slice thickness (equal for gapless 2D slices; a file does not record thickness reliably).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .geometry import obliquity_deg

#: Card keys: ranges [min, max] of spacings (mm) and the largest obliquity (degrees).
RANGE_KEYS = ("slice_thickness_mm", "in_plane_spacing_mm")
MAX_KEYS = ("obliquity_deg",)
TEXT_KEYS = ("note",)
#: Card key: [[slice mm, sensitivity, false positives per case], ...] measured on phantoms
#: re-acquired with those slices, axial (benchmarks/robustness.py); a thick-slice warning quotes the
#: measurement that applies.
MEASURED_KEYS = ("measured_by_slice_mm",)
#: A scan is outside a spacing range when it is more than 10 % beyond it (scanners write
#: 0.9375 or 1.1 mm for a "1 mm" protocol), and outside the obliquity when more than 3 degrees
#: beyond it (planning a plane by hand leaves a few degrees).
SPACING_TOLERANCE = 0.10
OBLIQUITY_TOLERANCE_DEG = 3.0


def slice_spacing_mm(spacing) -> float:
    """A grid's slice spacing (mm): its coarsest voxel spacing (any axis order; the slice axis
    of a 2D acquisition is its coarsest, and its spacing stands for the slice thickness)."""
    return float(max(float(s) for s in spacing[:3]))


#: The plane of slices stacked along L-R, A-P or S-I (the slice axis's nearest LPS axis).
PLANES_BY_NORMAL = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class ScanAcquisition:
    """slice_spacing_mm: the coarsest voxel spacing; in_plane_spacing_mm: the other two
    (largest first); obliquity_deg: the largest angle between a voxel axis and L, P or S;
    slice_plane: ``axial``, ``coronal`` or ``sagittal`` (the plane across the coarsest axis,
    by the LPS axis nearest to it), None when no axis is coarser than the others by more
    than :data:`SPACING_TOLERANCE` (a 3D acquisition)."""

    slice_spacing_mm: float
    in_plane_spacing_mm: tuple[float, float]
    obliquity_deg: float
    slice_plane: str | None = None

    @classmethod
    def of(cls, image: sitk.Image) -> ScanAcquisition:
        raw = [float(s) for s in image.GetSpacing()[:3]]
        spacing = sorted(raw, reverse=True)
        plane = None
        if spacing[0] > spacing[1] * (1 + SPACING_TOLERANCE):
            axis = int(np.argmax(raw))
            normal = np.reshape(image.GetDirection(), (3, 3))[:, axis]
            plane = PLANES_BY_NORMAL[int(np.argmax(np.abs(normal)))]
        return cls(slice_spacing_mm(spacing), (spacing[1], spacing[2]), obliquity_deg(image.GetDirection()), plane)


def _mm(v: float) -> str:
    return f"{v:.2g}" if v < 1 else f"{v:.3g}"


def _range(lo: float, hi: float) -> str:
    return f"{_mm(lo)} mm" if np.isclose(lo, hi) else f"{_mm(lo)}-{_mm(hi)} mm"


def _measured_note(slice_mm: float, measured: list | None, plane: str | None = None) -> str:
    """The sentence "On phantoms with S mm slices it found F of the lesions and P false ones per
    case (F0 and P0 at T mm)." for the thinnest measured slices at least as thick as the scan's
    (the thickest measured otherwise), against the thinnest measured; empty without measurements
    or when the scan is not thicker than the thinnest measured. The measurements are of axial
    slices: a scan whose slices are another ``plane`` is told so."""
    points = sorted(measured or [])
    if len(points) < 2 or slice_mm <= points[0][0] * (1 + SPACING_TOLERANCE):
        return ""
    thicker = [p for p in points[1:] if p[0] * (1 + SPACING_TOLERANCE) >= slice_mm]
    (mm, found, fp), (ref_mm, ref, ref_fp) = (thicker[0] if thicker else points[-1]), points[0]
    other = f"; measured on axial slices, this scan's are {plane}" if plane not in (None, "axial") else ""
    return (f" On phantoms with {_mm(mm)} mm slices it found {found:.2f} of the lesions and {fp:.2f} "
            f"false ones per case ({ref:.2f} and {ref_fp:.2f} at {_mm(ref_mm)} mm{other}).")


def acquisition_notes(image: sitk.Image, acquisition: dict, model: str) -> list[str]:
    """Sentences for each way ``image``'s acquisition lies outside the card's ``acquisition``
    (empty when the card states none, or the scan is within it)."""
    scan = ScanAcquisition.of(image)
    notes = []
    tol = 1 + SPACING_TOLERANCE
    if "slice_thickness_mm" in acquisition:
        lo, hi = acquisition["slice_thickness_mm"]
        if not lo / tol <= scan.slice_spacing_mm <= hi * tol:
            more = (" Thin lesions are averaged with the tissue around them: expect missed small "
                    "lesions and false ones" if scan.slice_spacing_mm > hi else "")
            measured = _measured_note(scan.slice_spacing_mm, acquisition.get("measured_by_slice_mm"),
                                      scan.slice_plane)
            notes.append(f"slice spacing {_mm(scan.slice_spacing_mm)} mm; model {model} was tested on "
                         f"slices of {_range(lo, hi)}.{more}".rstrip(".") + "." + measured)
    if "in_plane_spacing_mm" in acquisition:
        lo, hi = acquisition["in_plane_spacing_mm"]
        outside = [s for s in scan.in_plane_spacing_mm if not lo / tol <= s <= hi * tol]
        if outside:
            shown = " x ".join(_mm(s) for s in scan.in_plane_spacing_mm)
            notes.append(f"in-plane spacing {shown} mm; model {model} was tested on {_range(lo, hi)}.")
    if "obliquity_deg" in acquisition:
        limit = acquisition["obliquity_deg"]
        if scan.obliquity_deg > limit + OBLIQUITY_TOLERANCE_DEG:
            tested = "axis-aligned scans" if limit == 0 else f"scans oblique by up to {limit:g} degrees"
            notes.append(f"the scan's planes are oblique by {scan.obliquity_deg:.0f} degrees; model {model} "
                         f"was tested on {tested}.")
    return notes
