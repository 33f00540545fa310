"""Time added per case by the DICOM export (SEG + SR + RTSTRUCT), file sizes, dciodvfy.

    PYTHONPATH=. python benchmarks/bench_dicom_export.py [--out /tmp/bench_dicom]

Input: an oblique MR series on a clinical grid (256 x 256 x 176, 1 mm), written slice by
slice with SimpleITK like the tests' phantoms (Testing/dicom_phantoms.py), and a label map
of 10 spheres (radius 1.5-10 mm, random centres, seed 16). Each stage is timed in-process;
the whole export is run twice (the first run includes imports). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from BrainMetSegLib.dicom import ModelIdentity, export_dicom, read_reference_series  # noqa: E402
from BrainMetSegLib.dicom.reference import labels_on_reference  # noqa: E402
from BrainMetSegLib.dicom.rtstruct import build_rtstruct  # noqa: E402
from BrainMetSegLib.dicom.seg import build_seg  # noqa: E402
from BrainMetSegLib.dicom.sr import build_sr  # noqa: E402
from BrainMetSegLib.images import read_image  # noqa: E402
from BrainMetSegLib.lesions import lesion_table  # noqa: E402
from dicom_phantoms import lesion_labels, phantom_image, write_series  # noqa: E402


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
    image = phantom_image("oblique", size_xyz=(256, 256, 176), spacing_xyz=(1.0, 1.0, 1.0))
    timed("write series (176 slices)", write_series, image, root / "series")
    ce_t1 = timed("read series (pipeline reader)", read_image, root / "series")
    rng = np.random.default_rng(16)
    centre = np.array(ce_t1.TransformContinuousIndexToPhysicalPoint([127.5, 127.5, 87.5]))
    radii = (10, 8, 7, 6, 5, 4, 3, 2.5, 2, 1.5)
    labels = lesion_labels(ce_t1, [(tuple(centre + rng.uniform(-60, 60, 3)), r, 0.0) for r in radii])
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
