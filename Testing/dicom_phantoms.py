"""Small DICOM MR series written by SimpleITK (GDCM) from phantoms, and label maps on them.

Geometries: axial, oblique (rotated about two axes) and sagittal acquisitions.
"""

from __future__ import annotations

import contextlib
import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

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


@contextlib.contextmanager
def keep_locale():
    """GDCM's DICOM writer switches the process to the "C" locale (which would turn Python's
    default text encoding into ASCII for every later test); put it back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _ds(values) -> str:
    """DICOM DS values: at most 16 characters each."""
    return "\\".join(f"{float(v):.9g}" if abs(float(v)) >= 1e-6 else "0" for v in values)


def write_series(image: sitk.Image, folder: Path, series_uid: str = SERIES_UID) -> list[Path]:
    """One MR Image Storage file per slice along the image's z axis (SimpleITK/GDCM)."""
    folder.mkdir(parents=True, exist_ok=True)
    d = np.reshape(image.GetDirection(), (3, 3))
    iop = _ds(list(d[:, 0]) + list(d[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    with keep_locale():
        for k in range(image.GetDepth()):
            sl = image[:, :, k]
            tags = {**PATIENT,
                    "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|0060": "MR",
                    "0008|0018": f"{series_uid}.{k + 1}", "0008|0008": "ORIGINAL\\PRIMARY\\M\\NONE",
                    "0008|0070": "Phantom Scanner", "0020|000e": series_uid, "0020|000d": STUDY_UID,
                    "0020|0052": FRAME_UID, "0020|1040": "", "0020|0011": "3", "0020|0060": "",
                    "0020|0013": str(k + 1),
                    "0020|0032": _ds(image.TransformIndexToPhysicalPoint((0, 0, k))),
                    "0020|0037": iop, "0018|0050": _ds([image.GetSpacing()[2]]),
                    "0018|0020": "GR", "0018|0021": "SP", "0018|0022": "", "0018|0023": "3D",
                    "0018|0080": "8", "0018|0081": "3", "0018|0091": "1", "0018|5100": "HFS"}
            for key, value in tags.items():
                sl.SetMetaData(key, value)
            path = folder / f"IM{k + 1:04d}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(sl)
            files.append(path)
    return files
