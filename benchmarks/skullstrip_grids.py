"""deepbet's brain mask of tilted phantoms on each skull-strip grid, against the phantoms' true brain.

    PYTHONPATH=$PWD python benchmarks/skullstrip_grids.py PHANTOMS --cases synth_000,synth_007 \
        --variants original,tilt15x15,tilt30x30 --grids world-axes,input-axes,model-grid \
        [--control] [--figure synth_007:tilt30x30:docs/robustness/skullstrip_grids.png]

PHANTOMS: a ``brainmetseg synth --isotropic-only`` folder (read only; e.g. the robustness
benchmark's OUT/phantoms). Each case is re-acquired as the variant (the robustness benchmark's
:data:`VARIANTS`, same code), resampled onto the model grid, and given to deepbet as each
``--grids`` entry says (:func:`BrainMetSegLib.preprocess.brain_mask_checked`; on an axis-aligned
scan every entry runs the whole model grid). Per case, variant and grid one JSON line: the
mask (mL, never outside the scan's field of view), the truth (mL), Dice, mL of the mask more
than 3 mm outside the truth (what was let in), where deepbet ran and the seconds it took.
``--crop-axial`` adds, on the original, deepbet on the head's box of the model grid (what an
oblique scan gets) against the whole grid (what the original gets): the crop alone.
``--control`` adds the upright original padded with its background level into the world box
of its 30 + 30 degree tilted copy: the same anatomy and orientation as the original, only
the box is larger (the cause of the model grid's failure). ``--figure CASE:VARIANT:PNG`` draws
the masks of that case on its middle slices (matplotlib, :mod:`BrainMetSegLib.plotting`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.geometry import Grid, axis_aligned_grid, field_of_view_mask, resample
from BrainMetSegLib.options import PAPER_SPACING_MM
from BrainMetSegLib.plotting import pyplot, save_png
from BrainMetSegLib.preprocess import PreprocessConfig, brain_mask_checked, dilate_mm
from BrainMetSegLib.skullstrip import deepbet_mask
from BrainMetSegLib.skullstrip_grids import background_level, deepbet_on_world_axes
from BrainMetSegLib.synth.dataset import case_paths
from BrainMetSegLib.synth.reacquire import reacquire, target_grid


def _robustness_variants() -> dict:
    """The robustness benchmark's variants (benchmarks/robustness.py, its own definitions)."""
    spec = importlib.util.spec_from_file_location("robustness", Path(__file__).with_name("robustness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VARIANTS


VARIANTS = _robustness_variants()
COLOURS = {"truth": "lime", "world-axes": "red", "input-axes": "orange", "model-grid": "magenta",
           "crop-axial": "cyan"}


def scores(mask: np.ndarray, truth: np.ndarray, spacing_xyz) -> dict:
    """mL, Dice and mL more than 3 mm outside ``truth`` of ``mask`` (both (Z, Y, X) bool)."""
    ml = float(np.prod(spacing_xyz)) / 1000
    near = dilate_mm(truth, 3.0, spacing_xyz)
    return {"mask_ml": round(float(mask.sum()) * ml), "truth_ml": round(float(truth.sum()) * ml),
            "dice": round(2 * float((mask & truth).sum()) / float(mask.sum() + truth.sum()), 3),
            "outside_truth_3mm_ml": round(float((mask & ~near).sum()) * ml)}


def masks_of_case(image: sitk.Image, brain: sitk.Image, variant: str, grids: list[str]) -> tuple:
    """The variant's scan on the model grid, its truth, and deepbet's mask per grid (with rows)."""
    scan = reacquire({"image": image}, VARIANTS[variant])["image"]
    grid = axis_aligned_grid(scan, PAPER_SPACING_MM)
    on = resample(sitk.Cast(scan, sitk.sitkFloat32), grid)
    fov = field_of_view_mask(Grid.of(scan), grid)
    truth = sitk.GetArrayFromImage(resample(brain, grid, linear=False)) > 0
    masks, rows = {}, []
    for name in grids:
        t0 = time.perf_counter()
        if name == "crop-axial":
            mask, info = deepbet_on_world_axes(sitk.GetArrayViewFromImage(on), fov, grid.spacing_xyz)
            where = {"used": "world-axes (forced)", **info}
        else:
            config = PreprocessConfig(skullstrip_grid=name, detect_stripped=False)
            mask, run = brain_mask_checked(scan, on, grid, fov, config)
            where = run["grid"]
        seconds = round(time.perf_counter() - t0, 1)
        masks[name] = mask & fov
        rows.append({"variant": variant, "grid_requested": name, "deepbet_ran_on": where,
                     **scores(masks[name], truth, grid.spacing_xyz), "seconds": seconds})
    return sitk.GetArrayFromImage(on), truth, masks, rows  # a copy: a view dies with ``on``


def control(image: sitk.Image, brain: sitk.Image) -> dict:
    """deepbet on the upright original padded with its background into its tilted copy's world box."""
    g = target_grid(image, VARIANTS["tilt30x30"])
    tilted = Grid(tuple(g["size"]), tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]))
    box = axis_aligned_grid(tilted.image_from_array(np.zeros(tilted.size_xyz[::-1], np.uint8)), PAPER_SPACING_MM)
    own = sitk.GetArrayFromImage(resample(sitk.Cast(image, sitk.sitkFloat32), box))
    level = background_level(own, field_of_view_mask(Grid.of(image), box))
    padded = sitk.GetArrayFromImage(resample(sitk.Cast(image, sitk.sitkFloat32), box, default=level))
    truth = sitk.GetArrayFromImage(resample(brain, box, linear=False)) > 0
    return {"variant": "original padded into tilt30x30's world box", "grid_size_xyz": list(box.size_xyz),
            "padded_with": round(level, 2), **scores(deepbet_mask(padded), truth, box.spacing_xyz)}


def figure(array: np.ndarray, truth: np.ndarray, masks: dict, title: str, path: str) -> None:
    """Middle axial, coronal and sagittal slices of the truth's centre with every mask outlined."""
    plt = pyplot()
    centre = [int(np.mean(i)) for i in np.nonzero(truth)]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), dpi=80)
    for axis, ax in enumerate(axes):
        take = [slice(None)] * 3
        take[axis] = centre[axis]
        origin = "lower" if axis else "upper"
        high = float(np.percentile(array[truth], 99))
        ax.imshow(array[tuple(take)], cmap="gray", vmin=0, vmax=high, origin=origin)
        for name, mask in {"truth": truth, **masks}.items():
            m = mask[tuple(take)]
            if m.any() and not m.all():
                ax.contour(m.astype(float), [0.5], colors=COLOURS[name], linewidths=0.9, origin=origin)
        ax.set_title(("axial", "coronal", "sagittal")[axis], fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=COLOURS[n], label=n) for n in ("truth", *masks)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path, dpi=80, overwrite=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phantoms")
    p.add_argument("--cases", default="synth_000,synth_007")
    p.add_argument("--variants", default="original,tilt15x15,tilt30x30")
    p.add_argument("--grids", default="world-axes,input-axes,model-grid")
    p.add_argument("--crop-axial", action="store_true")
    p.add_argument("--control", action="store_true")
    p.add_argument("--figure", help="CASE:VARIANT:PNG")
    args = p.parse_args()
    fig_case, fig_variant, fig_path = (args.figure.split(":", 2) if args.figure else (None, None, None))
    for cid in args.cases.split(","):
        paths = case_paths(Path(args.phantoms), cid)
        image, brain = sitk.ReadImage(str(paths["image"])), sitk.ReadImage(str(paths["brain"]))
        for variant in args.variants.split(","):
            grids = args.grids.split(",") + (["crop-axial"] if args.crop_axial and variant == "original" else [])
            array, truth, masks, rows = masks_of_case(image, brain, variant, grids)
            for row in rows:
                print(json.dumps({"case": cid, **row}, default=str), flush=True)
            if (cid, variant) == (fig_case, fig_variant):
                title = f"{cid} {variant}: deepbet's brain mask by grid (" + ", ".join(
                    f"{r['grid_requested']} {r['mask_ml']} mL" for r in rows) + f"; truth {rows[0]['truth_ml']} mL)"
                figure(array, truth, masks, title, fig_path)
        if args.control:
            print(json.dumps({"case": cid, **control(image, brain)}), flush=True)


if __name__ == "__main__":
    main()
