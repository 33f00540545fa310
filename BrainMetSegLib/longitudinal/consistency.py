"""Do the time points of a comparison belong together? Refusals and warnings, with reasons.

A response is only as good as the claim that every scan shows the same patient, segmented the
same way. Checked against the baseline, per follow-up:

- **patient** (refused): DICOM PatientID, PatientName or PatientBirthDate differ (read from the
  scan's DICOM series, when a time point's scan is one), or the follow-up's StudyDate is before
  the baseline's;
- **segmentation** (refused): another model (weights sha256 in run.json) or settings that change
  which lesions are found or how large they are drawn: the operating point (detection
  threshold, minimum volume, outline threshold), brain mask kind, mask dilation, inference mode,
  patch size, overlap, blending, precision; one time point prior-guided and another not;
- **one scan twice** (refused): two time points with the same input (run.json sha256, or path)
  or, once read, the same voxels and grid: a scan compared with itself reads as stable disease;
- **acquisition** (warned): voxel size (e.g. slice thickness) changed by more than 10 %, or
  another scanner grid (size or orientation): diameters then differ for reasons other than the
  disease.

A user who knows better overrides refusals with a reason (``compare --force REASON``); the
reason and what it overrode are recorded with the result. A target outside a follow-up's field
of view is handled by the tracking (status "not-evaluable", response NE), not here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..options import MaskMethod, values

#: run.json ``settings`` keys that change the lesions a model finds or their size.
LESION_SETTINGS = ("threshold_used", "min_volume_mm3_used", "outline_threshold_used", "mask_dilation_mm",
                   "inference_mode", "patch_size", "overlap", "blend_mode", "precision", "mirror",
                   "grid_shifts")
#: values of LESION_SETTINGS keys that runs made before the setting existed ran with.
BEFORE_THE_SETTING = {"mirror": "none", "grid_shifts": 1}
#: run.json ``settings.candidate_stage`` keys that decide which candidates are lesions (a run
#: without the stage has none of them: compared with one that has it, refused).
STAGE_SETTINGS = ("mode", "cut", "review_from", "large_cut", "large_from_mm", "candidate_threshold",
                  "outside_brain_max_fraction", "scorer_sha256")
PATIENT_TAGS = ("PatientID", "PatientName", "PatientBirthDate")
SPACING_TOLERANCE = 0.10


@dataclass
class SourceInfo:
    """What is known of a time point's origin: its name, the scan path, the run record
    (run.json of a ``segment`` result, or the provenance of a scan segmented on the way; None
    for a label map given by hand) and the scan's DICOM identity (None unless a DICOM series)."""

    name: str
    scan: str
    run: dict | None = None
    dicom: dict | None = None


@dataclass
class Findings:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def enforce(self, force_reason: str | None) -> dict | None:
        """Raise :class:`InputError` listing the refusals, unless ``force_reason`` is given;
        returns the override record (reason, refusals) or None."""
        if not self.refusals:
            return None
        if not force_reason:
            raise InputError("these scans cannot be compared: " + "; ".join(self.refusals)
                             + ". (--force REASON compares them anyway and records the reason.)")
        return {"reason": force_reason, "overrode": list(self.refusals)}


def dicom_identity(scan: str | Path) -> dict | None:
    """PatientID, PatientName, PatientBirthDate, StudyInstanceUID, StudyDate of a DICOM series
    folder (its first readable file; None when ``scan`` is not a DICOM folder)."""
    folder = Path(scan)
    if not folder.is_dir():
        return None
    import pydicom

    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - any unreadable file: try the next one
            continue
        return {tag: str(ds.get(tag, "") or "") for tag in (*PATIENT_TAGS, "StudyInstanceUID", "StudyDate")}
    return None


def _settings_of(run: dict) -> dict:
    # Through JSON: a run.json read back and a run in memory compare alike (tuples = lists).
    settings = json.loads(json.dumps(run.get("settings") or {}, default=str))
    mask = settings.get("brain_mask")
    settings["brain_mask"] = mask if mask in (*values(MaskMethod), None) else "file"
    if "outline_threshold_used" not in settings and "threshold_used" in settings:
        settings["outline_threshold_used"] = settings["threshold_used"]  # before outlines existed
    if "threshold_used" in settings:  # a segment run's record: settings it predates ran at their old value
        settings = {**BEFORE_THE_SETTING, **settings}
    return settings


def check_patient(base: SourceInfo, other: SourceInfo, findings: Findings) -> None:
    if not base.dicom or not other.dicom:
        return
    for tag in PATIENT_TAGS:
        a, b = base.dicom.get(tag), other.dicom.get(tag)
        if a and b and a != b:
            findings.refusals.append(f"{other.name}: another patient ({tag} {b!r} vs {a!r} on {base.name})")
    a, b = base.dicom.get("StudyDate"), other.dicom.get("StudyDate")
    if a and b and b < a:
        findings.refusals.append(f"{other.name}: study date {b} is before the baseline's ({a})")


def check_segmentation(base: SourceInfo, other: SourceInfo, findings: Findings) -> None:
    if base.run is None or other.run is None:
        return
    ma, mb = (base.run.get("model") or {}), (other.run.get("model") or {})
    if ma.get("sha256") and mb.get("sha256") and ma["sha256"] != mb["sha256"]:
        findings.refusals.append(f"{other.name}: segmented by another model ({mb.get('name')} {mb.get('version')}, "
                                 f"weights {mb['sha256'][:12]}) than {base.name} ({ma.get('name')} "
                                 f"{ma.get('version')}, weights {ma['sha256'][:12]})")
    sa, sb = _settings_of(base.run), _settings_of(other.run)
    for key in ("brain_mask", *LESION_SETTINGS):
        if key in sa and key in sb and sa[key] != sb[key]:
            findings.refusals.append(f"{other.name}: segmented with {key} = {sb[key]} ({base.name}: {sa[key]})")
    ca, cb = sa.get("candidate_stage") or {}, sb.get("candidate_stage") or {}
    for key in STAGE_SETTINGS:
        if ca.get(key) != cb.get(key):
            findings.refusals.append(f"{other.name}: candidate stage {key} = {cb.get(key)} ({base.name}: "
                                     f"{ca.get(key)})")
    if bool(base.run.get("prior")) != bool(other.run.get("prior")):
        findings.refusals.append(f"{other.name}: one of {base.name} and {other.name} was segmented with a prior "
                                 "and the other without")


def check_grid(base: sitk.Image, other: sitk.Image, name: str, base_name: str, findings: Findings) -> None:
    sa, sb = np.array(base.GetSpacing()), np.array(other.GetSpacing())
    if np.any(np.abs(sb - sa) > SPACING_TOLERANCE * sa):
        findings.warnings.append(
            f"{name}: voxel size {tuple(round(float(v), 2) for v in sb)} mm differs from {base_name}'s "
            f"{tuple(round(float(v), 2) for v in sa)} mm (slice thickness changed?): diameters are not measured "
            "alike; small changes may be the acquisition, not the disease")
    elif base.GetSize() != other.GetSize() or not np.allclose(base.GetDirection(), other.GetDirection(), atol=1e-3):
        findings.warnings.append(f"{name}: another scanner grid than {base_name} (size or orientation differ); "
                                 "check that both are comparable acquisitions")


def _scan_key(source: SourceInfo, image: sitk.Image | None) -> str | None:
    """What identifies a time point's scan: its voxels and grid when the image is at hand, else
    the input's sha256 in its run record, else the scan's resolved path (None: unknown)."""
    if image is not None:
        digest = hashlib.sha256(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).tobytes())
        digest.update(repr((image.GetSpacing(), image.GetOrigin(), image.GetDirection())).encode())
        return digest.hexdigest()
    sha = (((source.run or {}).get("inputs") or {}).get("t1ce") or {}).get("sha256")
    return sha or (str(Path(source.scan).resolve()) if source.scan else None)


def check_distinct_scans(sources: list[SourceInfo], images: list[sitk.Image] | None, findings: Findings) -> None:
    """Refuse two time points that are one scan (the same file or the same voxels): a follow-up
    is a later acquisition, and a scan compared with itself reads as stable disease."""
    seen: dict[str, str] = {}
    for k, src in enumerate(sources):
        key = _scan_key(src, None if images is None else images[k])
        if key is not None and key in seen:
            findings.refusals.append(f"{src.name}: the same scan as {seen[key]} ("
                                     f"{'identical voxels and grid' if images is not None else 'the same input'})"
                                     ": time points must be separate acquisitions")
        elif key is not None:
            seen[key] = src.name


def check_series(sources: list[SourceInfo], images: list[sitk.Image] | None = None) -> Findings:
    """Every follow-up against the baseline (``sources[0]``); ``images`` (the scans, same order)
    for the grid warnings and the scans' identity."""
    findings = Findings()
    check_distinct_scans(sources, images, findings)
    base = sources[0]
    for k, other in enumerate(sources[1:], start=1):
        check_patient(base, other, findings)
        check_segmentation(base, other, findings)
        if images is not None:
            check_grid(images[0], images[k], other.name, base.name, findings)
    return findings
