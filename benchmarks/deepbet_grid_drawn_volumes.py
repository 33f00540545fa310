"""Drawn volumes of the same lesions with deepbet on a 256^3 and a 224^3 crop (docs/speed.md,
"deepbet at a smaller internal grid"), from the robustness benchmark's cached label maps of two
work folders (made with ``benchmarks/with_deepbet_grid.py``), each lesion found at both grids
matched to the phantom's truth:

    python benchmarks/deepbet_grid_drawn_volumes.py WORK256 WORK224 [--variants original,tilt15x15,slice5mm]

Prints per variant the drawn / true volume medians, the paired 224 / 256 ratio (median, IQR,
extremes) and the longest-diameter error medians.
"""

import argparse
import statistics as st
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.evaluate.lesionwise import match_lesions
from BrainMetSegLib.synth.dataset import case_paths


def found(labels: Path, truth: sitk.Image) -> dict:
    """Truth lesion volume -> (drawn / true volume, diameter error mm, true diameter mm) of each found lesion."""
    lab = sitk.Resample(sitk.ReadImage(str(labels)), truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    m = match_lesions(sitk.GetArrayFromImage(truth) > 0, sitk.GetArrayFromImage(lab) > 0, truth.GetSpacing(),
                      "overlap", truth.GetDirection())
    return {round(g.volume_mm3, 3): (g.pred_volume_mm3 / g.volume_mm3,
                                     g.pred_longest_diameter_mm - g.longest_diameter_mm, g.longest_diameter_mm)
            for g in m.gt if g.detected}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work256", type=Path)
    p.add_argument("work224", type=Path)
    p.add_argument("--variants", default="original,tilt15x15,slice5mm")
    args = p.parse_args()
    key = next((args.work256 / "results").iterdir()).name
    for variant in args.variants.split(","):
        pairs = []
        for labels in sorted((args.work256 / "results" / key / variant).glob("*.labels.nii.gz")):
            cid = labels.name.split(".")[0]
            truth = sitk.ReadImage(str(case_paths(args.work256 / "phantoms", cid)["instances"]))
            a, b = found(labels, truth), found(args.work224 / "results" / key / variant / labels.name, truth)
            pairs += [(a[t], b[t]) for t in a if t in b]
        rel = [b[0] / a[0] for a, b in pairs]
        big = [(a, b) for a, b in pairs if a[2] >= 10]
        print(f"{variant}: {len(pairs)} lesions; drawn/true volume median 256 {st.median(a[0] for a, _ in pairs):.3f}, "
              f"224 {st.median(b[0] for _, b in pairs):.3f}; paired 224/256 median {st.median(rel):.4f}, "
              f"IQR {np.round(np.percentile(rel, [25, 75]), 3).tolist()}, min {min(rel):.3f}, max {max(rel):.3f}; "
              f"diameter error median {st.median(a[1] for a, _ in pairs):.2f} / "
              f"{st.median(b[1] for _, b in pairs):.2f} mm; "
              f">= 10 mm ({len(big)}) volume median {st.median(a[0] for a, _ in big):.3f} / "
              f"{st.median(b[0] for _, b in big):.3f}")


if __name__ == "__main__":
    main()
