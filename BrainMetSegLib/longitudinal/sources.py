"""Time points from what the user has: ``segment`` result folders, scans, or scans + label maps.

- a result folder of ``brainmetseg segment`` (``lesion_labels.<ext>``, ``lesions.json``,
  ``run.json``): the label map and table are used as they are; the scan is the CE-T1 that
  ``run.json`` names, checked against the sha256 recorded there (a scan changed since it was
  segmented is refused);
- a scan (image file or DICOM series folder): segmented with the given model on the way;
- a scan plus a label map (``--labels``): e.g. segmentations corrected by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..checksums import sha256_file
from ..errors import InputError
from ..images import IMAGE_SUFFIXES, read_mask_image, read_scalar_volume, same_geometry
from ..lesions import lesion_table
from ..run_record import read_run
from .tracking import TimePoint


def first_image(folder: Path, stem: str) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suf}").is_file():
            return folder / f"{stem}{suf}"
    return None


def is_result_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "run.json").is_file() and first_image(p, "lesion_labels") is not None


def read_labels(path: str | Path, image: sitk.Image, image_path: str | Path) -> sitk.Image:
    """An instance label map for ``image``: integer voxels, same grid. A binary mask is split
    into 26-connected lesions (largest first); an all-zero map is a scan without lesions."""
    from ..lesions import label_instances

    if not Path(path).exists():
        raise InputError(f"{path}: label map not found.")
    # all zero: no lesion; all non-zero, fractional, negative or image-like values: refused
    labels = read_mask_image(path, "label map")
    if labels.GetDimension() == 4:
        labels = labels[:, :, :, 0]
    arr = sitk.GetArrayFromImage(labels)
    if not same_geometry(labels, image):
        raise InputError(f"{path}: the label map is not on the grid of its scan {image_path} (size, spacing, origin "
                         "or direction differ); give the label map that belongs to that scan.")
    arr = arr.astype(np.int64)
    if arr.max() <= 1:
        arr = label_instances(arr > 0, labels.GetSpacing())
    out = sitk.GetImageFromArray(arr.astype(np.uint16))
    out.CopyInformation(image)
    return out


def from_result_folder(folder: str | Path, name: str | None = None) -> TimePoint:
    """A time point from a ``segment`` result folder (see module docstring)."""
    folder = Path(folder)
    run = read_run(folder) or {}  # fields checked by type (run_record.RUN_SCHEMA)
    scan = (run.get("inputs") or {}).get("t1ce") or {}
    scan_path = scan.get("path")
    if not scan_path or not Path(scan_path).exists():
        raise InputError(f"{folder}: the CE-T1 this result was made from ({scan_path or 'not recorded'}) is not "
                         "there any more; registration needs the scan (give the scan and --labels instead).")
    if scan.get("sha256") and sha256_file(scan_path) != scan["sha256"]:
        raise InputError(f"{scan_path}: the scan changed since {folder} was segmented (sha256 differs from "
                         "run.json); segment it again.")
    image = read_scalar_volume(scan_path, "CE-T1")
    labels_path = first_image(folder, "lesion_labels")
    labels = read_labels(labels_path, image, scan_path)
    table = None
    table_path = folder / "lesions.json"
    if table_path.is_file():
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))["lesions"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise InputError(f"{table_path}: cannot read the lesion table ({exc}).") from None
        ids = {int(r["lesion_id"]) for r in table}
        present = set(np.unique(sitk.GetArrayViewFromImage(labels))) - {0}
        if ids != present:
            # Edited after segmentation (e.g. in Slicer): measure the label map as it is now.
            table = None
    if table is None:
        table = lesion_table(labels)
    return TimePoint(name or folder.name, image, labels, table, source=str(folder))


def from_scan_and_labels(scan: str | Path, labels_path: str | Path, name: str | None = None) -> TimePoint:
    image = read_scalar_volume(scan, "CE-T1")
    labels = read_labels(labels_path, image, scan)
    return TimePoint(name or scan_name(scan), image, labels, lesion_table(labels), source=str(scan))


def scan_name(path: str | Path) -> str:
    """A scan's file name without its image suffix (a DICOM folder: the folder name)."""
    name = Path(path).name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name
