"""Writing a volume as a DICOM MR series (one MR Image Storage file per slice, SimpleITK/GDCM).

Made for phantoms: ``brainmetseg synth --dicom`` writes every image also as a series folder,
to test a PACS route, a DICOM reader or the ``--dicom`` export end to end. Needs only
SimpleITK (no pydicom). Geometry: the image's z axis is the slice axis; each slice is written
as a one-slice volume, so GDCM writes Image Position (Patient) (the LPS position of voxel
(0, 0, k), mm), Image Orientation (Patient) (the direction's first two columns), Pixel Spacing
and Spacing Between Slices from the image itself; Slice Thickness is the z spacing. A
series reader (GDCM, SimpleITK, :func:`BrainMetSegLib.dicom_series.read_dicom_series`) then
builds the same image: size, spacing, origin, direction and voxel values. A stack whose z axis
runs against x cross y (a left-handed direction matrix) cannot be read back in that order by
GDCM, which orders slices along x cross y: it is written reversed along z, the same voxels at
the same LPS positions.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import locale
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import OutputError
from ..folder_staging import staged_folder

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# Pixel types a DICOM MR image stores as they are (no rescale slope to invent).
_INTEGER_PIXELS = (sitk.sitkInt8, sitk.sitkUInt8, sitk.sitkInt16, sitk.sitkUInt16)
# Acquisition attributes the MR Image IOD requires (type 1/2): a 3D gradient-echo CE-T1.
_MR_ACQUISITION = {"0018|0020": "GR", "0018|0021": "SP", "0018|0022": "", "0018|0023": "3D",
                   "0018|0080": "8", "0018|0081": "3", "0018|0091": "1", "0018|5100": "HFS"}


@dataclass(frozen=True)
class SeriesIdentity:
    """Patient, study and series identity of a written series (DICOM value formats:
    dates YYYYMMDD, sex M/F/O, PatientSize in m, PatientWeight in kg)."""

    patient_name: str
    patient_id: str
    study_uid: str
    series_uid: str
    frame_uid: str
    birth_date: str = ""
    sex: str = "O"
    accession: str = ""
    study_id: str = "1"
    study_date: str = ""
    study_time: str = ""  # HHMMSS; GDCM writes the time of writing when this is empty
    study_description: str = ""
    series_description: str = ""
    series_number: int = 1
    size_m: float | None = None
    weight_kg: float | None = None
    manufacturer: str = "BrainMetSeg synth"

    def tags(self) -> dict[str, str]:
        """The identity as SimpleITK metadata (``"gggg|eeee"`` tag -> value)."""
        tags = {"0010|0010": self.patient_name, "0010|0020": self.patient_id,
                "0010|0030": self.birth_date, "0010|0040": self.sex, "0008|0050": self.accession,
                "0020|0010": self.study_id, "0020|000d": self.study_uid, "0020|000e": self.series_uid,
                "0020|0052": self.frame_uid, "0020|0011": str(self.series_number),
                "0008|0070": self.manufacturer}
        optional = {"0010|1020": self.size_m, "0010|1030": self.weight_kg, "0008|0020": self.study_date,
                    "0008|0030": self.study_time, "0008|1030": self.study_description,
                    "0008|103e": self.series_description}
        for tag, value in optional.items():
            if value:
                tags[tag] = value if isinstance(value, str) else ds_values([value])
        return tags


#: Synthetic scan dates: the baseline on this day, follow-up k ``FOLLOWUP_WEEKS`` * k weeks later.
BASELINE_DATE = datetime.date(2020, 1, 1)
FOLLOWUP_WEEKS = 12


def uid_from(*parts: object) -> str:
    """A DICOM UID under the UUID root 2.25 (no registered organisation root needed), the same
    for the same ``parts``: a series written twice from the same phantom keeps its UIDs."""
    return f"2.25.{_digest(*parts).int}"


def _digest(*parts: object) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(parts, sort_keys=True, default=str))


def series_folder(outdir: str | os.PathLike, name: str) -> Path:
    """Where ``synth --dicom`` writes the series of image ``name`` (``<case>`` or ``<case>_fu<k>``)."""
    return Path(outdir) / "dicom" / name


def phantom_identity(cid: str, provenance: dict | None, followup: int = 0) -> SeriesIdentity:
    """Identity of synthetic case ``cid``'s scan (``followup`` 0: the baseline): one patient per
    case (ID = case id + a digest of seed and options, so two datasets do not share a patient),
    one study per scan, dated ``FOLLOWUP_WEEKS`` apart from ``BASELINE_DATE``. UIDs follow
    from the same facts: writing the same phantom again gives the same UIDs."""
    prov = provenance or {}
    patient = [cid, *(prov.get(k) for k in ("generator_version", "dataset_seed", "case_seed", "options"))]
    study = [*patient, followup, prov.get("followup_options") if followup else None]
    date = BASELINE_DATE + datetime.timedelta(weeks=FOLLOWUP_WEEKS * followup)
    return SeriesIdentity(
        patient_name=f"Synthetic^{cid}", patient_id=f"{cid}-{_digest(*patient).hex[:8]}",
        study_uid=uid_from(*study, "study"), series_uid=uid_from(*study, "series"),
        frame_uid=uid_from(*study, "frame"), study_id=str(followup + 1),
        study_date=date.strftime("%Y%m%d"), study_time="090000",
        study_description="BrainMetSeg synthetic phantom (not a patient)",
        series_description="CE-T1 (synthetic)" if not followup else f"CE-T1 (synthetic), follow-up {followup}")


@contextlib.contextmanager
def keep_locale():
    """GDCM's DICOM writer switches the process to the "C" locale (which would turn Python's
    default text encoding into ASCII for everything after it); put it back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def ds_values(values: Sequence[float]) -> str:
    """DICOM DS (decimal string) values: at most 16 characters each, 9 significant digits."""
    return "\\".join(f"{float(v):.9g}" if abs(float(v)) >= 1e-6 else "0" for v in values)


def _right_handed(image: sitk.Image) -> sitk.Image:
    """``image``, reversed along z when x cross y points against its z axis (same LPS voxels)."""
    d = np.reshape(image.GetDirection(), (3, 3))
    return image if np.dot(np.cross(d[:, 0], d[:, 1]), d[:, 2]) > 0 else sitk.Flip(image, [False, False, True])


def write_series_files(image: sitk.Image, folder: Path, identity: SeriesIdentity) -> list[Path]:
    """Write ``image`` (3D, 8/16-bit integer) into ``folder`` as ``IM0001.dcm`` ... (one per
    slice along z), next to whatever the folder holds; returns the files in slice order.
    :func:`write_dicom_series` makes a complete series folder atomically."""
    if image.GetDimension() != 3 or image.GetPixelID() not in _INTEGER_PIXELS:
        raise ValueError(f"a DICOM MR series is written from a 3D 8/16-bit integer image, not a "
                         f"{image.GetDimension()}D {image.GetPixelIDTypeAsString()}")
    image = _right_handed(image)
    folder.mkdir(parents=True, exist_ok=True)
    common = {**identity.tags(), **_MR_ACQUISITION, "0008|0016": MR_IMAGE_STORAGE, "0008|0060": "MR",
              "0008|0008": "ORIGINAL\\PRIMARY\\M\\NONE", "0020|1040": "", "0020|0060": "",
              "0018|0050": ds_values([image.GetSpacing()[2]])}
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    with keep_locale():
        for k in range(image.GetDepth()):
            sl = image[:, :, k:k + 1]  # 3D: a 2D slice would lose its position and z spacing
            tags = {**common, "0008|0018": f"{identity.series_uid}.{k + 1}", "0020|0013": str(k + 1)}
            for key, value in tags.items():
                sl.SetMetaData(key, value)
            path = folder / f"IM{k + 1:04d}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(sl)
            files.append(path)
    return files


def write_dicom_series(image: sitk.Image, folder: str | os.PathLike, identity: SeriesIdentity,
                       overwrite: bool = False) -> Path:
    """Write ``image`` as the DICOM series folder ``folder`` (see :func:`write_series_files`),
    atomically (:func:`~BrainMetSegLib.folder_staging.staged_folder`: a failed or interrupted
    write leaves no partial series). An existing ``folder`` is replaced only with ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputError(f"{folder}: already exists; pass --overwrite to replace it.")
    with staged_folder(folder, "DICOM series folder") as tmp:
        try:
            write_series_files(image, tmp, identity)
        except RuntimeError as exc:  # GDCM: disk full, permissions
            raise OutputError(f"{folder}: cannot write the DICOM series "
                              f"({str(exc).strip().splitlines()[-1]}); nothing was replaced.") from None
    return folder
