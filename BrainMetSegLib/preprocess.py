"""Preprocessing in the paper's order: resample, brain extraction, z-score, crop.

One implementation serves inference and training. Input images are on the CE-T1
grid (extra sequences co-registered first, see :mod:`coregister`). The result is a
(C, Z, Y, X) float32 array on an axis-aligned LPS grid at the model's spacing,
cropped to the brain's bounding box plus a margin, with a :class:`Geometry` to go
back to the input grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from . import normalisation as imported_norm
from .errors import InputError
from .geometry import Geometry, Grid, axis_aligned_grid, resample
from .options import PAPER_SPACING_MM, MaskMethod, Normalisation, values

MASK_METHODS = values(MaskMethod)


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing settings.

    spacing_mm: model grid spacing (x, y, z), mm.
    brain_mask: ``"deepbet"``, ``"none"`` (already skull-stripped: non-zero voxels) or a mask file path.
    mask_dilation_mm: the brain mask is dilated by this much before it gates anything, so a
        lesion at the brain surface that the mask carved out is kept (>= 3 mm, SPEC.md).
    crop_margin_mm: margin around the dilated brain's bounding box. Default 0: the array is
        zero outside the dilated mask, so a margin only adds zero voxels to compute (1.5x
        less inference for the paper's network at equal accuracy, docs/speed.md).
    normalisation: ``"zscore-brain"`` (mean/SD of brain voxels), ``"none"``, or an imported
        model's scheme (:data:`BrainMetSegLib.normalisation.SCHEMES`).
    device: device for deepbet (``"cpu"`` or ``"cuda"``).
    trust_header: read a mask file whose header orientation is untrusted (see :mod:`filecheck`).
    deepbet_bf16: run deepbet under bf16 autocast (CPU; for CPUs with native bf16).
    detect_stripped: with ``brain_mask="deepbet"``, skip deepbet when the CE-T1 is already
        skull-stripped (:mod:`BrainMetSegLib.stripped`) and use its non-zero voxels.
    """

    spacing_mm: tuple[float, float, float] = PAPER_SPACING_MM
    brain_mask: str = "deepbet"
    mask_dilation_mm: float = 4.0
    crop_margin_mm: float = 0.0
    normalisation: str = "zscore-brain"
    device: str = "cpu"
    trust_header: bool = False
    deepbet_bf16: bool = False
    detect_stripped: bool = True


@dataclass
class Preprocessed:
    """array: (C, Z, Y, X) float32, normalised; brain: (Z, Y, X) bool, dilated brain mask;
    brain_ml: volume of the brain mask before dilation (mL); brain_mask_run: how the mask was
    made, for run.json (method used, the skull-stripped check)."""

    array: np.ndarray
    brain: np.ndarray
    geometry: Geometry
    brain_ml: float = float("nan")
    brain_mask_run: dict = field(default_factory=dict)


def _ball(radius_mm: float, spacing_xyz) -> np.ndarray:
    r = [max(int(np.floor(radius_mm / s)), 0) for s in spacing_xyz[::-1]]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_xyz[::-1]
    return (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm ** 2 + 1e-6


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing_xyz) -> np.ndarray:
    """Dilate a (Z, Y, X) bool mask by a ball of ``radius_mm`` in physical space."""
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=_ball(radius_mm, spacing_xyz))


def brain_mask_on_grid(ce_t1_grid: sitk.Image, method: str, device: str = "cpu",
                       bf16: bool = False) -> np.ndarray:
    """Brain mask (Z, Y, X) bool of the resampled CE-T1 by ``method`` (deepbet, none, or a file)."""
    array = sitk.GetArrayViewFromImage(ce_t1_grid)
    if method == "deepbet":
        from .skullstrip import deepbet_mask

        return deepbet_mask(np.asarray(array), device=device, bf16=bf16)
    if method == "none":
        nonzero = np.asarray(array) != 0
        if nonzero.all():
            return nonzero
        return ndimage.binary_fill_holes(nonzero)
    raise ValueError(f"brain mask method {method!r}")


def brain_mask_checked(ce_t1_grid: sitk.Image, config: PreprocessConfig) -> tuple[np.ndarray, dict]:
    """:func:`brain_mask_on_grid` for ``config.brain_mask``, except that deepbet is skipped (and
    the non-zero voxels used, as ``none`` does) when the image is already skull-stripped.
    Returns the mask and what was done (for run.json)."""
    method = config.brain_mask
    if method == "deepbet" and config.detect_stripped:
        from .stripped import check_skull_stripped

        check = check_skull_stripped(sitk.GetArrayViewFromImage(ce_t1_grid), ce_t1_grid.GetSpacing())
        run = {"method_requested": method, "skull_stripped_check": check.as_dict()}
        if check.stripped:
            return brain_mask_on_grid(ce_t1_grid, "none"), {**run, "method": "none (deepbet skipped)"}
        return brain_mask_on_grid(ce_t1_grid, method, config.device, config.deepbet_bf16), {**run, "method": method}
    return (brain_mask_on_grid(ce_t1_grid, method, config.device, config.deepbet_bf16),
            {"method_requested": method, "method": method})


def _mask_from_file(path: str, grid: Grid, trust_header: bool = False) -> np.ndarray:
    from .io import read_mask_image

    mask = read_mask_image(path, role="brain mask", trust_header=trust_header, empty_ok=False)
    if sitk.GetArrayViewFromImage(mask).min() != 0:
        raise InputError(f"{path}: the brain mask covers the whole image (no voxel is 0); a brain "
                         "mask marks the brain only. For a skull-stripped scan pass --brain-mask none.")
    if mask.GetDimension() != 3:
        raise InputError(f"{path}: brain mask must be a 3D image.")
    on_grid = sitk.GetArrayFromImage(resample(mask, grid, linear=False)) > 0
    if not on_grid.any():
        raise InputError(f"{path}: brain mask is empty where the CE-T1 is (wrong file or geometry?).")
    return on_grid


def _crop_box(mask: np.ndarray, margin_vox) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - m, 0), min(int(i.max()) + 1 + m, n))
                 for i, m, n in zip(idx, margin_vox, mask.shape, strict=True))


def zscore(array: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Z-score ``array`` with the mean and SD of its ``brain`` voxels (float32 out).

    Statistics and arithmetic are float64: intensities near float32's limit (~1e30 and up)
    overflow a float32 variance to inf and would turn every voxel into 0 or NaN.
    """
    values = array[brain].astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise InputError("intensities inside the brain mask are too large to normalise "
                         f"(mean {mean:g}, SD {std:g}); rescale the image.")
    if std <= 0:
        raise InputError("the image is constant inside the brain mask; nothing to normalise.")
    return ((array.astype(np.float64) - mean) / std).astype(np.float32)


def preprocess(images: list[sitk.Image], config: PreprocessConfig,
               brain_mask: sitk.Image | None = None) -> Preprocessed:
    """Resample ``images`` (CE-T1 first, all on its grid) to the model grid, mask, normalise, crop.

    brain_mask: an explicit mask image (physical space); overrides ``config.brain_mask``.
    """
    ce_t1 = images[0]
    mask_run = {"method": "given" if brain_mask is not None else config.brain_mask}
    grid = axis_aligned_grid(ce_t1, config.spacing_mm)
    on_grid = [resample(sitk.Cast(im, sitk.sitkFloat32), grid) for im in images]
    if brain_mask is not None:
        brain = sitk.GetArrayFromImage(resample(brain_mask, grid, linear=False)) > 0
    elif config.brain_mask in MASK_METHODS:
        brain, mask_run = brain_mask_checked(on_grid[0], config)
    elif os.path.exists(config.brain_mask) or Path(config.brain_mask).suffix:
        brain = _mask_from_file(config.brain_mask, grid, config.trust_header)
    else:
        raise InputError(f"{config.brain_mask}: brain mask is neither 'deepbet', 'none' nor a file.")
    if not brain.any():
        raise InputError("the brain mask is empty; check the image or pass --brain-mask.")
    gate = dilate_mm(brain, config.mask_dilation_mm, grid.spacing_xyz)
    margin = [int(np.ceil(config.crop_margin_mm / s)) for s in grid.spacing_xyz[::-1]]
    box = _crop_box(gate, margin)
    native, native_mask = None, None
    if config.normalisation in imported_norm.SCHEMES:  # imported models' own z-score
        native = imported_norm.native_statistics(images, config.normalisation)
        if native.mask is not None:
            native_mask = sitk.GetArrayFromImage(resample(native.mask, grid, linear=False))[box] > 0
    channels = []
    for c, im in enumerate(on_grid):
        arr = sitk.GetArrayViewFromImage(im)[box]
        if Normalisation(config.normalisation) is Normalisation.ZSCORE_BRAIN:
            arr = zscore(np.asarray(arr, np.float32), brain[box])
        elif native is not None:
            arr = native.apply(c, np.asarray(arr), native_mask)
        channels.append(np.where(gate[box], arr, 0).astype(np.float32))
    start_xyz = [s.start for s in box[::-1]]
    size_xyz = [s.stop - s.start for s in box[::-1]]
    geometry = Geometry(Grid.of(ce_t1), grid.crop(start_xyz, size_xyz))
    brain_ml = float(brain.sum()) * float(np.prod(grid.spacing_xyz)) / 1000.0
    return Preprocessed(np.stack(channels), np.ascontiguousarray(gate[box]), geometry, brain_ml, mask_run)
