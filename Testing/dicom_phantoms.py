"""Small DICOM MR series from phantoms (the library's writer,
:mod:`BrainMetSegLib.synth.dicom_writer`), and label maps on them.

Geometries: axial, oblique (rotated about two axes) and sagittal acquisitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.synth.dicom_writer import SeriesIdentity, write_series_files
from conftest import make_volume

SERIES_UID = "1.2.826.0.1.3680043.8.498.16.1"
STUDY_UID = "1.2.826.0.1.3680043.8.498.16.2"
FRAME_UID = "1.2.826.0.1.3680043.8.498.16.3"
PATIENT = {"0010|0010": "Phantom^Dicom", "0010|0020": "BMS-PH-016", "0010|0030": "19600101",
           "0010|0040": "O", "0008|0050": "ACC016", "0020|0010": "16",
           "0010|1020": "1.78", "0010|1030": "72.5"}


def _rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    a, b = np.radians(ax_deg), np.radians(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


# Direction matrices (columns = LPS directions of the x, y, z image axes).
GEOMETRIES = {
    "axial": np.eye(3),
    "oblique": _rotation(20.0, 12.0),
    # sagittal slices: rows run anterior->posterior, columns superior->inferior, slices along L/R
    "sagittal": np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float),
}


def phantom_image(geometry: str, size_xyz=(36, 40, 22), spacing_xyz=(0.9, 0.9, 1.2)) -> sitk.Image:
    """An int16 'head' block with the given acquisition geometry, centred near the origin."""
    direction = GEOMETRIES[geometry]
    image = make_volume(shape_zyx=size_xyz[::-1], spacing_xyz=spacing_xyz,
                        direction=tuple(direction.ravel()))
    centre_index = (np.asarray(size_xyz) - 1) / 2
    origin = np.array([3.0, -7.5, 12.0]) - direction @ (centre_index * np.asarray(spacing_xyz))
    image.SetOrigin(tuple(origin))
    return sitk.Cast(image * 10.0, sitk.sitkInt16)


def lesion_labels(image: sitk.Image, lesions_lps: list[tuple[tuple[float, float, float], float, float]]):
    """Label map on ``image``'s grid: lesion n (1-based, in list order) = voxels whose centre
    lies within radius (mm) of its centre (LPS mm) and outside its inner radius (0 = solid)."""
    size = image.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    d = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    lps = np.asarray(image.GetOrigin()) + idx @ d.T
    labels_xyz = np.zeros(len(idx), np.uint16)
    for n, (centre, radius, inner) in enumerate(lesions_lps, start=1):
        r = np.linalg.norm(lps - np.asarray(centre), axis=1)
        labels_xyz[(r <= radius) & (r >= inner)] = n
    out = sitk.GetImageFromArray(labels_xyz.reshape(size).transpose(2, 1, 0).copy())
    out.CopyInformation(image)
    return out


# (centre LPS mm, radius mm, inner radius mm): two solid lesions >= 5 mm, one ring lesion,
# one small (< 5 mm) lesion; ids by decreasing size.
LESIONS = [((4.0, -6.0, 13.0), 6.0, 3.0), ((-5.0, -12.0, 8.0), 4.0, 0.0),
           ((10.0, -2.0, 15.0), 3.0, 0.0), ((-4.0, 0.0, 16.0), 1.6, 0.0)]


def write_series(image: sitk.Image, folder: Path, series_uid: str = SERIES_UID) -> list[Path]:
    """One MR Image Storage file per slice along the image's z axis, identity from ``PATIENT``
    (read at call time: a test may patch it), into ``folder`` beside what it holds."""
    p = PATIENT
    identity = SeriesIdentity(
        patient_name=p["0010|0010"], patient_id=p["0010|0020"], birth_date=p["0010|0030"], sex=p["0010|0040"],
        accession=p["0008|0050"], study_id=p["0020|0010"], size_m=float(p["0010|1020"]),
        weight_kg=float(p["0010|1030"]), study_uid=STUDY_UID, series_uid=series_uid, frame_uid=FRAME_UID,
        series_number=3, manufacturer="Phantom Scanner")
    return write_series_files(image, folder, identity)
