"""The skull-stripped check (:mod:`BrainMetSegLib.stripped`) on real templates and phantoms.

    brainmetseg synth -n 4 -o HEADS --seed 2900
    brainmetseg synth -n 3 -o STRIPPED --seed 2950 --no-skull
    python benchmarks/skull_stripped_check.py [--spacing 0.833] [--json OUT] HEADS/imagesTr/*_0000.nii.gz \
        STRIPPED/imagesTr/*_0000.nii.gz

Always included: Colin27's head and its two BET brains (Debian mricron-data, when installed) and
nilearn's MNI152 2009 T1 brain. Each image is resampled to the model grid as the pipeline does,
then checked as it is, with its air zeroed (below 5 % of the 99th percentile: a head whose
converter blanked the background), and then cut to an axial slab (the middle 40 % of the
slices: a field of view that cuts the head or brain, so that a head's volume looks like a
brain's). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.geometry import axis_aligned_grid, resample
from BrainMetSegLib.precision import cpu_features
from BrainMetSegLib.stripped import check_skull_stripped

TEMPLATES = Path("/usr/share/mricron/templates")


def _mni152() -> str:
    from nilearn import datasets

    path = Path(tempfile.mkdtemp()) / "mni152_2009_t1.nii.gz"
    datasets.load_mni152_template(resolution=1).to_filename(str(path))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*")
    parser.add_argument("--spacing", type=float, default=0.833)
    parser.add_argument("--json")
    args = parser.parse_args()
    paths = [str(TEMPLATES / n) for n in ("ch2.nii.gz", "ch2bet.nii.gz", "ch2better.nii.gz")
             if (TEMPLATES / n).is_file()] + [_mni152()] + args.images
    rows = []
    for path in paths:
        image = sitk.ReadImage(path, sitk.sitkFloat32)
        grid = resample(image, axis_aligned_grid(image, (args.spacing,) * 3))
        array = sitk.GetArrayFromImage(grid)
        z = array.shape[0]
        zeroed = np.where(array > 0.05 * np.percentile(array, 99), array, 0)
        variants = {"as is": array, "air zeroed": zeroed, "air zeroed, slab": zeroed[int(0.3 * z):int(0.7 * z)]}
        for name, a in variants.items():
            t0 = time.perf_counter()
            check = check_skull_stripped(a, grid.GetSpacing())
            rows.append({"image": path, "variant": name, "seconds": round(time.perf_counter() - t0, 3),
                         **check.as_dict()})
            print(Path(path).name, name, check.stripped, check.reason, flush=True)
    report = {"cpu": cpu_features().as_dict(), "load_average": os.getloadavg(), "spacing_mm": args.spacing,
              "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
