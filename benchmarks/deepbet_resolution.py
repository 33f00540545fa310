"""deepbet at lower internal resolutions: mask Dice, lesion keep rate and time, on phantoms.

    brainmetseg synth -n 4 -o HEADS --seed 2900
    python benchmarks/deepbet_resolution.py HEADS [--shapes 256 224 192 160] [--spacing 0.833]
        [--bf16] [--json OUT]

deepbet crops its brain box and resizes it (nearest) to ``shape``^3 for its network (256^3 by
default). For each phantom (CE-T1 resampled to the model grid as the pipeline does), each
shape runs once, in turn (interleaved, so machine load hits them alike); reported: seconds,
Dice of the mask against the 256^3 mask, and, with the mask dilated by the pipeline's 4 mm,
per ground-truth lesion the share of its voxels kept, and how many lesions keep >= 99 %.
Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cc3d
import numpy as np
import SimpleITK as sitk
import torch

from BrainMetSegLib.geometry import axis_aligned_grid, resample
from BrainMetSegLib.precision import cpu_features
from BrainMetSegLib.preprocess import PreprocessConfig, dilate_mm
from BrainMetSegLib.skullstrip import _deepbet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--shapes", type=int, nargs="+", default=[256, 224, 192, 160])
    parser.add_argument("--spacing", type=float, default=0.833)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    bet = _deepbet("cpu")
    dilation = PreprocessConfig().mask_dilation_mm
    report = {"cpu": cpu_features().as_dict(), "load_average_at_start": os.getloadavg(),
              "spacing_mm": args.spacing, "bf16": args.bf16, "dilation_mm": dilation, "cases": []}
    for path in sorted(Path(args.folder, "imagesTr").glob("*_0000.nii.gz")):
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        grid = axis_aligned_grid(image, (args.spacing,) * 3)
        arr = sitk.GetArrayFromImage(resample(image, grid))
        label_path = Path(args.folder, "labelsTr", path.name.replace("_0000", ""))
        truth = sitk.GetArrayFromImage(resample(sitk.ReadImage(str(label_path)), grid, linear=False)) > 0
        lesions = cc3d.connected_components(truth.astype(np.uint8))
        ras = np.ascontiguousarray(arr.transpose(2, 1, 0)[::-1, ::-1, :], dtype=np.float32)
        masks, case = {}, {"image": str(path), "lesions": int(lesions.max()), "shapes": {}}
        for shape in args.shapes:
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                prob = bet.run_model(ras.copy(), shape=(shape,) * 3)
            mask = np.asarray(bet.postprocess(prob > 0.5), bool)[::-1, ::-1, :].transpose(2, 1, 0)
            seconds = time.perf_counter() - t0
            masks[shape] = mask
            gate = dilate_mm(mask, dilation, grid.spacing_xyz)
            kept = [float(gate[lesions == i].mean()) for i in range(1, int(lesions.max()) + 1)]
            ref = masks[args.shapes[0]]
            case["shapes"][shape] = {
                "seconds": round(seconds, 2),
                "dice_vs_first": round(float(2 * (mask & ref).sum() / (mask.sum() + ref.sum())), 5),
                "lesions_kept_99": sum(k >= 0.99 for k in kept), "lesion_keep_min": round(min(kept, default=1.0), 4)}
            print(path.name, shape, case["shapes"][shape], flush=True)
        report["cases"].append(case)
        report["load_average_at_end"] = os.getloadavg()
        if args.json:  # after each case: a long run may be stopped
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
