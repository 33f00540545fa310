"""A small synthetic `brainmetseg segment` result folder for the viewer tests (no model run).

A 56x48x28 CE-T1 (1 x 1 x 1.5 mm, oblique-free, off-centre origin) with four spherical
blobs in its probability map: three lesions that pass the operating threshold 0.8 and a
faint one (peak 0.6) that appears only when the threshold is lowered. The label map and
table are the library's own (`operating_point.lesion_labels`, `lesions.lesion_table`), written with
`outputs.write_result`, so the folder is what `brainmetseg segment` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels
from BrainMetSegLib.outputs import write_result
from BrainMetSegLib.pipeline import Result

THRESHOLD = 0.8
# (centre x, y, z in voxels, radius mm, peak probability)
BLOBS = ((16, 14, 9, 6.0, 0.99), (38, 30, 18, 5.0, 0.97), (40, 12, 8, 4.5, 0.95), (20, 34, 20, 4.0, 0.6))
SPACING = (1.0, 1.0, 1.5)
ORIGIN = (-20.0, 12.0, -8.0)


def _grid(array_zyx: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def make_result_folder(folder: Path) -> Path:
    """Write the CE-T1 and a result folder (labels, probability, table, run.json) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (28, 48, 56)
    z, y, x = np.indices(shape, dtype=float)
    rng = np.random.default_rng(7)
    head = (((x - 27.5) / 26) ** 2 + ((y - 23.5) / 22) ** 2 + ((z - 13.5) / 13) ** 2) <= 1
    ce_t1 = np.where(head, rng.normal(300, 20, shape), 0.0)
    probability = np.zeros(shape)
    for cx, cy, cz, radius, peak in BLOBS:
        d = np.sqrt(((x - cx) * SPACING[0]) ** 2 + ((y - cy) * SPACING[1]) ** 2 + ((z - cz) * SPACING[2]) ** 2)
        # peak inside 0.2 radius, falling linearly to 0 at 1.2 radius
        probability = np.maximum(probability, peak * np.clip(1.2 - d / radius, 0, 1))
        ce_t1 += np.where(d <= radius, 500.0, 0.0)
    image_path = folder / "ce_t1.nii.gz"
    sitk.WriteImage(_grid(ce_t1.astype(np.float32)), str(image_path))
    prob = _grid(np.clip(probability, 0, 1).astype(np.float32))
    labels = lesion_labels(prob, OperatingPoint(THRESHOLD, 0.0))
    table = lesion_table(labels, prob)
    provenance = {"settings": {"threshold_used": THRESHOLD, "min_volume_mm3_used": 0.0},
                  "inputs": {"t1ce": {"path": str(image_path.resolve())}},
                  "model": {"name": "synthetic-test", "version": "0"}, "warnings": ["synthetic test data"]}
    out = folder / "result"
    write_result(Result("ce_t1", labels, prob, table, {"inference": 0.0}, provenance), out, ".nii.gz")
    return out
