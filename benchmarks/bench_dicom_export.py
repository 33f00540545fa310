"""Time added per case by the DICOM export (SEG + SR + RTSTRUCT), file sizes, dciodvfy.

    PYTHONPATH=. python benchmarks/bench_dicom_export.py [--out /tmp/bench_dicom]

Input: an oblique MR series on a clinical grid (256 x 256 x 176, 1 mm; the tests' oblique
geometry, Testing/dicom_phantoms.py), written slice by slice by the library's series writer
(BrainMetSegLib.synth.dicom_writer, as ``synth --dicom``), and a label map of 10 spheres
(radius 1.5-10 mm, random centres, seed 16). Each stage is timed in-process;
the whole export is run twice (the first run includes imports). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.dicom import ModelIdentity, export_dicom, read_reference_series
from BrainMetSegLib.dicom.reference import labels_on_reference
from BrainMetSegLib.dicom.rtstruct import build_rtstruct
from BrainMetSegLib.dicom.seg import build_seg
from BrainMetSegLib.dicom.sr import build_sr
from BrainMetSegLib.images import read_image
from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.synth.dicom_writer import phantom_identity, write_dicom_series


def oblique_image(size_xyz=(256, 256, 176), spacing_mm: float = 1.0, seed: int = 16) -> sitk.Image:
    """int16 noise around 1000 on a grid turned 20 degrees about x, then 12 about z (LPS),
    centred at (3, -7.5, 12) mm: the tests' oblique acquisition."""
    a, b = np.radians(20.0), np.radians(12.0)
    turn_x = [[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]
    turn_z = [[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]]
    direction = np.asarray(turn_z) @ np.asarray(turn_x)
    values = np.random.default_rng(seed).normal(1000, 50, size_xyz[::-1]).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing([spacing_mm] * 3)
    image.SetDirection(direction.ravel().tolist())
    half_extent = direction @ ((np.asarray(size_xyz) - 1) / 2 * spacing_mm)
    image.SetOrigin((np.array([3.0, -7.5, 12.0]) - half_extent).tolist())
    return image


def sphere_labels(grid: sitk.Image, spheres: list[tuple[np.ndarray, float]]) -> sitk.Image:
    """uint16 label map on ``grid``: sphere n (1-based) = the voxels whose centre lies within
    its radius (mm) of its centre (LPS mm)."""
    points = sitk.GetArrayFromImage(sitk.PhysicalPointSource(
        sitk.sitkVectorFloat32, grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection()))
    labels = np.zeros(points.shape[:3], np.uint16)
    for n, (centre, radius) in enumerate(spheres, start=1):
        labels[np.linalg.norm(points - np.asarray(centre, np.float32), axis=-1) <= radius] = n
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(grid)
    return out


def timed(label: str, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    print(f"{label:32s} {time.perf_counter() - t0:6.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_dicom")
    root = parser.parse_args().out
    shutil.rmtree(root, ignore_errors=True)
    timed("write series (176 slices)", write_dicom_series, oblique_image(), root / "series",
          phantom_identity("bench", None))
    ce_t1 = timed("read series (pipeline reader)", read_image, root / "series")
    rng = np.random.default_rng(16)
    centre = np.array(ce_t1.TransformContinuousIndexToPhysicalPoint([127.5, 127.5, 87.5]))
    radii = (10, 8, 7, 6, 5, 4, 3, 2.5, 2, 1.5)
    labels = sphere_labels(ce_t1, [(centre + rng.uniform(-60, 60, 3), r) for r in radii])
    table = timed("lesion table", lesion_table, labels)
    model = ModelIdentity("brainmetseg-demo", "1.1.0", "ab" * 32, {"threshold_used": "0.8"})
    for run in (1, 2):
        paths = timed(f"export seg+sr+rtstruct (run {run})", export_dicom, labels, table, root / "series",
                      root / f"out{run}", ("seg", "sr", "rtstruct"), model)
    reference = timed("  read reference headers", read_reference_series, root / "series")
    frames = timed("  label map onto the series", labels_on_reference, labels, reference)
    seg = timed("  build SEG", build_seg, reference, frames, model)
    timed("  build SR", build_sr, reference, seg, frames, table, model)
    timed("  build RTSTRUCT", build_rtstruct, reference, frames, model)
    print(f"{len(table)} lesions; sizes: " + ", ".join(f"{p.name} {p.stat().st_size / 1e3:.0f} kB"
                                                    for p in paths.values()))
    for path in paths.values():
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        print(f"$ dciodvfy {path.name}\n{(run.stdout + run.stderr).strip()}")


if __name__ == "__main__":
    main()
