"""What the pipeline sees on a scan: the preprocessed model-grid image with its brain mask.

    PYTHONPATH=$PWD python benchmarks/robustness_figures.py IMAGE -o docs/robustness/NAME.png \
        [--title TEXT] [--truth INSTANCES] [--reference ORIGINAL] [--skullstrip-grid GRID]

Runs :func:`BrainMetSegLib.preprocess.preprocess` with the default model's settings (deepbet
mask) and draws the middle axial, coronal and sagittal slices of the scan resampled on the model grid
(z-scored as the network gets it, but shown outside the gate too) with the dilated brain mask that gates it outlined
(red: the gate; yellow: the input's field of view where it does not cover the grid;
green: ground-truth lesions when ``--truth`` is given). Prints (JSON) the brain-mask volume
(mL), the model-grid volume outside the input's field of view and, with ``--reference`` (the
same head as originally acquired), the mL of the dilated mask outside the reference's dilated
mask (what was let in). ``--skullstrip-grid input-axes|model-grid`` runs deepbet on an oblique
scan's own planes or on the whole axis-aligned model grid (before issue 24) for comparison
(default ``world-axes``, :mod:`BrainMetSegLib.skullstrip_grids`). Small PNGs for docs/robustness/.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.geometry import field_of_view_mask
from BrainMetSegLib.models import load_package
from BrainMetSegLib.plotting import pyplot
from BrainMetSegLib.preprocess import PreprocessConfig, preprocess


def _panels(pre, image, truth):
    plt = pyplot()
    arr = pre.geometry.to_model_grid(sitk.Cast(image, sitk.sitkFloat32), linear=True)
    inside = arr[pre.brain]
    arr = (arr - inside.mean()) / inside.std()  # as the network's z-score, but not gated
    fov = field_of_view_mask(pre.geometry.input_grid, pre.geometry.model_grid)
    centre = [int(np.mean(i)) for i in np.nonzero(pre.brain)]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8), dpi=80)
    for ax, axis in zip(axes, range(3), strict=True):
        take = [slice(None)] * 3
        take[axis] = centre[axis]
        img = arr[tuple(take)]
        ax.imshow(img, cmap="gray", vmin=-2.5, vmax=3.5, origin="lower" if axis else "upper")
        for mask, colour in ((pre.brain, "red"), (fov, "yellow"), (truth, "lime")):
            if mask is not None:
                m = mask[tuple(take)]
                if m.any() and not m.all():
                    ax.contour(m.astype(float), [0.5], colors=colour, linewidths=0.8,
                               origin="lower" if axis else "upper")
        ax.set_title(("axial", "coronal", "sagittal")[axis], fontsize=9)
        ax.axis("off")
    return fig


def leak_ml(pre, reference) -> float:
    """mL of ``pre``'s dilated brain mask outside ``reference``'s (both Preprocessed, same head)."""
    ref = reference.geometry.model_grid.image_from_array(reference.brain.astype(np.uint8))
    on_pre = pre.geometry.to_model_grid(ref) > 0
    return float((pre.brain & ~on_pre).sum()) * float(np.prod(pre.geometry.model_grid.spacing_xyz)) / 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--truth", help="ground-truth instance map (outlined in green)")
    p.add_argument("--reference", help="the same head as originally acquired (for the leak in mL)")
    p.add_argument("--skullstrip-grid", default="world-axes", choices=("world-axes", "input-axes", "model-grid"))
    args = p.parse_args()
    card = load_package("brainmetseg-demo").card
    config = PreprocessConfig(spacing_mm=tuple(card.spacing_mm), skullstrip_grid=args.skullstrip_grid)
    image = sitk.ReadImage(args.image)
    pre = preprocess([image], config)
    truth = pre.geometry.to_model_grid(sitk.ReadImage(args.truth)) > 0 if args.truth else None
    fig = _panels(pre, image, truth)
    stats = {"image": args.image, "brain_ml": round(pre.brain_ml, 1), "spacing_mm": list(image.GetSpacing()),
             "skullstrip_grid": args.skullstrip_grid, "outside_fov_ml": round(pre.fov_ml, 1),
             "model_grid_size_xyz": list(pre.geometry.model_grid.size_xyz)}
    if args.reference:
        reference = preprocess([sitk.ReadImage(args.reference)], config)
        stats["reference_brain_ml"] = round(reference.brain_ml, 1)
        stats["let_in_ml"] = round(leak_ml(pre, reference), 1)
    fig.suptitle(f"{args.title}  brain mask {pre.brain_ml:.0f} mL", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
