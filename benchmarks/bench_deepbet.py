"""deepbet: mask agreement at smaller internal grids, and fp32 vs bf16 timing, interleaved.

    brainmetseg synth -n 10 -o /tmp/p14 --seed 4000
    python benchmarks/bench_deepbet.py /tmp/p14/imagesTr/synth_003_0000.nii.gz [--spacing 1.2]
        [--rounds 3] [--shapes 192 160 128]

deepbet crops its own brain box and resizes it to 256^3 for its network whatever the input
spacing. Reported: Dice of the mask at smaller internal grids against deepbet's own 256^3 fp32
mask, and per round, interleaved, the seconds of fp32, bf16 autocast, and bf16 autocast with
channels_last_3d weights (what ``deepbet_mask(bf16=True)`` runs) with their mask Dice against
fp32. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import SimpleITK as sitk
import torch

from BrainMetSegLib.geometry import axis_aligned_grid, resample
from BrainMetSegLib.skullstrip import _deepbet, _run_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--spacing", type=float, default=1.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", type=int, nargs="*", default=[192, 160, 128])
    args = parser.parse_args()
    bet = _deepbet("cpu")
    image = sitk.ReadImage(args.image, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(resample(image, axis_aligned_grid(image, (args.spacing,) * 3)))
    ras = np.ascontiguousarray(arr.transpose(2, 1, 0)[::-1, ::-1, :], dtype=np.float32)

    def mask(kind: str, shape: int = 256) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        if kind == "bf16_cl":
            prob = _run_bf16(bet, ras, 256)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
                prob = bet.run_model(ras.copy(), shape=(shape,) * 3)
        return np.asarray(bet.postprocess(prob > 0.5), bool), time.perf_counter() - t0

    def dice(a, b):
        return round(float(2 * (a & b).sum() / (a.sum() + b.sum())), 5)

    ref, _ = mask("fp32")
    report = {"image": args.image, "spacing_mm": args.spacing,
              "internal_grid_dice_vs_256": {s: dice(mask("fp32", s)[0], ref) for s in args.shapes},
              "rounds": []}
    for _ in range(args.rounds):
        row = {}
        for kind in ("fp32", "bf16", "bf16_cl"):
            m, seconds = mask(kind)
            row[kind] = {"s": round(seconds, 2), "dice_vs_fp32": dice(m, ref)}
        report["rounds"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
