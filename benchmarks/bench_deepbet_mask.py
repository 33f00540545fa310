"""deepbet's mask as the pipeline makes it, in a fresh process: CPU and wall seconds of the
first call (OpenVINO exports read from the cache, compiled, first inference) and the next ones.

    python benchmarks/bench_deepbet_mask.py [IMAGE] [--calls 2] [--backend-cache FOLDER]

IMAGE (default the bundled sample) is resampled to the demo model's 0.833 mm grid as the
pipeline does; deepbet runs with ``openvino=True`` (its brain network and, from issue 29, its
box finder where the box is certain). Run it alternately from two checkouts
(``PYTHONPATH=/work/main`` and the branch) for an interleaved A/B on a shared machine; the
masks' voxel count shows that both give the same mask. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import SimpleITK as sitk

from BrainMetSegLib import skullstrip
from BrainMetSegLib.geometry import axis_aligned_grid, resample
from BrainMetSegLib.resources import SAMPLE_CE_T1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=str(SAMPLE_CE_T1))
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=0.8333, help="model grid spacing (mm)")
    parser.add_argument("--backend-cache", default=None, help="OpenVINO cache (default: the user's)")
    args = parser.parse_args()
    image = sitk.ReadImage(args.image)
    grid = axis_aligned_grid(image, (args.spacing,) * 3)
    array = sitk.GetArrayFromImage(resample(sitk.Cast(image, sitk.sitkFloat32), grid))
    skullstrip._deepbet("cpu")  # TorchScript load: once per process, not timed
    calls, info, mask = [], {}, None
    for _ in range(args.calls):
        info = {}
        t, c = time.perf_counter(), time.process_time()
        mask = skullstrip.deepbet_mask(array, openvino=True, cache_dir=args.backend_cache, info=info)
        calls.append({"wall_s": round(time.perf_counter() - t, 2), "cpu_s": round(time.process_time() - c, 2)})
    backend = info.get("deepbet_backend", {})
    print(json.dumps({"calls": calls, "mask_voxels": int(mask.sum()), "load_average": os.getloadavg()[0],
                      "brain_network": backend.get("used"), "box_from": backend.get("box_finder", {}).get("box_from",
                                                                                                        "torch")}))


if __name__ == "__main__":
    main()
