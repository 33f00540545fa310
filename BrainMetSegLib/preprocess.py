"""Preprocessing in the paper's order: resample, brain extraction, z-score, crop.

One implementation serves inference and training. Input images are on the CE-T1
grid (extra sequences co-registered first, see :mod:`coregister`). The result is a
(C, Z, Y, X) float32 array on an axis-aligned LPS grid at the model's spacing,
cropped to the brain's bounding box plus a margin, with a :class:`Geometry` to go
back to the input grid.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from . import normalisation as imported_norm
from .errors import InputError
from .geometry import (
    Geometry,
    Grid,
    axis_aligned_grid,
    field_of_view_mask,
    obliquity_deg,
    resample,
)
from .options import (
    PAPER_SPACING_MM,
    Device,
    MaskMethod,
    Normalisation,
    SkullstripGrid,
    as_brain_mask,
    as_options,
)
from .plausibility import model_grid_problem, outside_head_fraction
from .skullstrip import DEEPBET_GRID
from .skullstrip_grids import deepbet_on_input_axes, deepbet_on_world_axes, is_oblique


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing settings.

    spacing_mm: model grid spacing (x, y, z), mm.
    brain_mask: a :class:`~BrainMetSegLib.options.MaskMethod` (``"none"``: already skull-stripped,
        non-zero voxels) or a mask file's path (kept as given).
    mask_dilation_mm: the brain mask is dilated by this much before it gates anything, so a
        lesion at the brain surface that the mask carved out is kept (>= 3 mm, SPEC.md).
    crop_margin_mm: margin around the dilated brain's bounding box. Default 0: the array is
        zero outside the dilated mask, so a margin only adds zero voxels to compute (1.5x
        less inference for the paper's network at equal accuracy, docs/speed.md).
    normalisation: ``"zscore-brain"`` (mean/SD of brain voxels), ``"none"``, or an imported
        model's scheme (:data:`BrainMetSegLib.normalisation.SCHEMES`).
    device: device for deepbet (``"cpu"`` or ``"cuda"``).
    Choices given as strings become the enum members of :mod:`~BrainMetSegLib.options` on creation.
    trust_header: read a mask file whose header orientation is untrusted (see :mod:`filecheck`).
    deepbet_bf16: run deepbet in bf16 (CPU; for CPUs with native bf16): torch's autocast, or
        OpenVINO's bf16 kernels with ``deepbet_openvino``.
    deepbet_openvino: run deepbet's brain network in OpenVINO, fp32 or bf16 (CPU; chosen with the
        inference's backend), exported once into ``backend_cache`` (None: ``$BRAINMETSEG_CACHE/openvino``).
    detect_stripped: with ``brain_mask="deepbet"``, skip deepbet when the CE-T1 is already
        skull-stripped (:mod:`BrainMetSegLib.stripped`) and use its non-zero voxels.
    skullstrip_grid: where deepbet runs on an oblique scan (:mod:`.skullstrip_grids`):
        ``"world-axes"`` (the model grid's L, P, S axes, cropped to the head, unmeasured voxels
        at the background level), ``"input-axes"`` (the scan's own planes) or ``"model-grid"``
        (the whole axis-aligned model grid, as before issue 24); the last two kept for
        comparison. An axis-aligned scan always uses the whole model grid.
    deepbet_cube: the cube (voxels a side) deepbet's network sees its brain crop resized to
        (run.json ``brain_mask_run.deepbet_grid``; the pipeline asks for
        :data:`~.skullstrip.DEEPBET_GRID_THICK` on scans its thick-slice weights run).
    """

    spacing_mm: tuple[float, float, float] = PAPER_SPACING_MM
    brain_mask: MaskMethod | str = MaskMethod.DEEPBET
    mask_dilation_mm: float = 4.0
    crop_margin_mm: float = 0.0
    normalisation: Normalisation = Normalisation.ZSCORE_BRAIN
    device: Device = Device.CPU
    trust_header: bool = False
    deepbet_bf16: bool = False
    deepbet_openvino: bool = False
    backend_cache: str | None = None
    detect_stripped: bool = True
    skullstrip_grid: SkullstripGrid = SkullstripGrid.WORLD_AXES
    deepbet_cube: int = DEEPBET_GRID

    def __post_init__(self):
        as_options(self, normalisation=(Normalisation, "normalisation"), device=(Device, "device"),
                   skullstrip_grid=(SkullstripGrid, "skullstrip_grid"))
        object.__setattr__(self, "brain_mask", as_brain_mask(self.brain_mask))


@dataclass
class Preprocessed:
    """array: (C, Z, Y, X) float32, normalised; brain: (Z, Y, X) bool, dilated brain mask
    (never outside the input's field of view); brain_ml: volume of the brain mask before
    dilation (mL); brain_mask_run: how the mask was made, for run.json (method used, the
    skull-stripped check); fov_ml: volume (mL) of the model grid the input does not cover
    (zero-filled by resampling, excluded from the brain); edge_ml: brain (mL) within 2 mm of
    the field of view's edge (a brain the scan cut); brain_undilated: (Z, Y, X) bool, the brain
    mask before dilation, cropped as ``brain`` (None where not made by :func:`preprocess`)."""

    array: np.ndarray
    brain: np.ndarray
    geometry: Geometry
    brain_ml: float = float("nan")
    brain_mask_run: dict = field(default_factory=dict)
    fov_ml: float = 0.0
    edge_ml: float = 0.0
    brain_undilated: np.ndarray | None = None


# Squared mm added to the ball's radius^2 so that float32 rounding never drops a voxel at
# exactly the radius (a lattice point at 4 mm on a 1 mm grid); 1e-4 mm^2 is 1e-5 mm at 4 mm.
_BALL_TOLERANCE_MM2 = 1e-4


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing_xyz) -> np.ndarray:
    """Dilate a (Z, Y, X) bool mask by a ball of ``radius_mm`` in physical space.

    The voxels within ``radius_mm`` (Euclidean, mm) of a mask voxel, i.e. the binary dilation
    by the ball {d : |d|^2 <= radius^2 + 1e-4 mm^2}. Computed separably: the squared distance
    to the mask along X, then Y, then Z, each over offsets up to the radius (exact, since a
    point of the ball has every axis offset within the radius), in the mask's bounding box
    grown by the radius: 0.3 s instead of 4.5 s for scipy's dilation by the ball on the sample.
    """
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    spacing_zyx = [float(s) for s in spacing_xyz[::-1]]
    reach = [int(np.floor(radius_mm / s)) for s in spacing_zyx]
    box = _crop_box(mask, reach)
    limit = radius_mm ** 2 + _BALL_TOLERANCE_MM2
    squared = np.where(mask[box], np.float32(0), np.float32(2 * limit + 1))
    for axis in (2, 1, 0):
        squared = _squared_distance_along(squared, axis, reach[axis], spacing_zyx[axis])
    out = np.zeros(mask.shape, bool)
    out[box] = squared <= limit
    return out


def _squared_distance_along(squared: np.ndarray, axis: int, reach: int, spacing: float) -> np.ndarray:
    """min over |k| <= reach of squared[i + k] + (k * spacing)^2 along ``axis`` (float32)."""
    out = squared.copy()
    n = squared.shape[axis]
    for k in range(1, min(reach, n - 1) + 1):
        step = np.float32((k * spacing) ** 2)
        ahead = [slice(None)] * squared.ndim
        behind = [slice(None)] * squared.ndim
        ahead[axis], behind[axis] = slice(k, n), slice(0, n - k)
        ahead, behind = tuple(ahead), tuple(behind)
        np.minimum(out[ahead], squared[behind] + step, out=out[ahead])
        np.minimum(out[behind], squared[ahead] + step, out=out[behind])
    return out


def brain_mask_on_grid(ce_t1_grid: sitk.Image, method: MaskMethod, device: Device = Device.CPU,
                       bf16: bool = False, **engine) -> np.ndarray:
    """Brain mask (Z, Y, X) bool of the resampled CE-T1 by ``method`` (deepbet or none);
    ``engine``: deepbet's other options (:func:`~.skullstrip.deepbet_mask`)."""
    array = sitk.GetArrayViewFromImage(ce_t1_grid)
    if method == MaskMethod.DEEPBET:
        from .skullstrip import deepbet_mask

        return deepbet_mask(np.asarray(array), device=device, bf16=bf16, **engine)
    if method == MaskMethod.NONE:
        nonzero = np.asarray(array) != 0
        if nonzero.all():
            return nonzero
        return ndimage.binary_fill_holes(nonzero)
    raise ValueError(f"brain mask method {method!r}")


def brain_mask_checked(ce_t1: sitk.Image, ce_t1_grid: sitk.Image, grid: Grid, fov: np.ndarray,
                       config: PreprocessConfig) -> tuple[np.ndarray, dict]:
    """The brain mask on ``grid`` by ``config.brain_mask``, except that deepbet is skipped (and
    the non-zero voxels used, as ``none`` does) when the image is already skull-stripped.
    ``fov``: (Z, Y, X) bool on ``grid``, where the scan measured. Where deepbet runs is
    :func:`deepbet_grid`'s choice. Returns the mask and what was done (for run.json)."""
    method = config.brain_mask
    run = {"method_requested": method, "method": method}
    if method == MaskMethod.DEEPBET and config.detect_stripped:
        from .stripped import check_skull_stripped

        check = check_skull_stripped(sitk.GetArrayViewFromImage(ce_t1_grid), ce_t1_grid.GetSpacing())
        run["skull_stripped_check"] = check.as_dict()
        if check.stripped:
            return brain_mask_on_grid(ce_t1_grid, MaskMethod.NONE), {**run, "method": "none (deepbet skipped)"}
    if method != MaskMethod.DEEPBET:
        return brain_mask_on_grid(ce_t1_grid, method), run
    engine = {"openvino": config.deepbet_openvino, "cache_dir": config.backend_cache, "info": run,
              "grid": config.deepbet_cube}
    where = deepbet_grid(ce_t1, config.skullstrip_grid)
    run["grid"] = {"used": where, "obliquity_deg": round(obliquity_deg(ce_t1.GetDirection()), 1)}
    if where == SkullstripGrid.WORLD_AXES:
        mask, info = deepbet_on_world_axes(sitk.GetArrayViewFromImage(ce_t1_grid), fov, grid.spacing_xyz,
                                           config.device, config.deepbet_bf16, **engine)
        run["grid"].update(info)
        return mask, run
    if where == SkullstripGrid.INPUT_AXES:
        return deepbet_on_input_axes(ce_t1, grid, config.device, config.deepbet_bf16, **engine), run
    return brain_mask_on_grid(ce_t1_grid, method, config.device, config.deepbet_bf16, **engine), run


def deepbet_grid(ce_t1: sitk.Image, requested: SkullstripGrid) -> SkullstripGrid:
    """Where deepbet runs on ``ce_t1``: an axis-aligned scan (within a few degrees,
    :func:`~BrainMetSegLib.skullstrip_grids.is_oblique`) on the whole model grid, as it always
    did; an oblique one as ``requested`` (:mod:`~BrainMetSegLib.skullstrip_grids`)."""
    return requested if is_oblique(ce_t1.GetDirection()) else SkullstripGrid.MODEL_GRID


def _mask_from_file(path: str, grid: Grid, trust_header: bool = False) -> np.ndarray:
    from .images import read_mask_image

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
    """The bounding box of ``mask``'s True voxels grown by ``margin_vox`` (per axis), clipped
    to the array (projections per axis: no index arrays of the whole mask)."""
    box = []
    for axis, (m, n) in enumerate(zip(margin_vox, mask.shape, strict=True)):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - m, 0), min(int(present[-1]) + 1 + m, n)))
    return tuple(box)


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


def edge_ml(brain: np.ndarray, fov: np.ndarray, spacing_xyz, mm: float = 2.0) -> float:
    """mL of ``brain`` within ``mm`` of the edge of ``fov`` or of the grid (both (Z, Y, X) bool)."""
    r = int(np.ceil(mm / min(spacing_xyz)))
    box = _crop_box(brain, [r] * 3)  # the brain lies >= r voxels inside the box unless at the grid's edge
    inner = ndimage.binary_erosion(fov[box], iterations=r, border_value=0)
    return float((brain[box] & ~inner).sum()) * float(np.prod(spacing_xyz)) / 1000.0


def _brain(images: list[sitk.Image], on_grid: list[sitk.Image], grid: Grid, fov: np.ndarray,
           config: PreprocessConfig, brain_mask: sitk.Image | None) -> tuple[np.ndarray, dict]:
    """The (undilated) brain mask on ``grid`` from ``brain_mask``, deepbet, ``none`` or a file,
    and how it was made (for run.json)."""
    if isinstance(config.brain_mask, MaskMethod) and brain_mask is None:
        return brain_mask_checked(images[0], on_grid[0], grid, fov, config)
    if brain_mask is not None:
        mask, method = sitk.GetArrayFromImage(resample(brain_mask, grid, linear=False)) > 0, "given"
    elif os.path.exists(config.brain_mask) or Path(config.brain_mask).suffix:
        mask, method = _mask_from_file(config.brain_mask, grid, config.trust_header), config.brain_mask
    else:
        raise InputError(f"{config.brain_mask}: brain mask is neither 'deepbet', 'none' nor a file.")
    outside = outside_head_fraction(sitk.GetArrayViewFromImage(on_grid[0]), mask)
    return mask, {"method": method, "outside_head_fraction": round(outside, 3)}


def _channels(arrays: list[np.ndarray], brain: np.ndarray, gate: np.ndarray, images: list[sitk.Image],
              config: PreprocessConfig, mask_on_grid) -> list[np.ndarray]:
    """Each image's (Z, Y, X) array on the model grid normalised (z-score over ``brain``, or an
    imported model's own scheme from the ``images`` as given, its mask put on the grid by
    ``mask_on_grid``) and zeroed outside ``gate``; float32."""
    native, native_mask = None, None
    if config.normalisation in imported_norm.SCHEMES:  # imported models' own z-score
        native = imported_norm.native_statistics(images, config.normalisation)
        if native.mask is not None:
            native_mask = mask_on_grid(native.mask) > 0
    channels = []
    for c, arr in enumerate(arrays):
        if config.normalisation == Normalisation.ZSCORE_BRAIN:
            arr = zscore(np.asarray(arr, np.float32), brain)
        elif native is not None:
            arr = native.apply(c, np.asarray(arr), native_mask)
        channels.append(np.where(gate, arr, 0).astype(np.float32))
    return channels


def preprocess(images: list[sitk.Image], config: PreprocessConfig,
               brain_mask: sitk.Image | None = None) -> Preprocessed:
    """Resample ``images`` (CE-T1 first, all on its grid) to the model grid, mask, normalise, crop.

    brain_mask: an explicit mask image (physical space); overrides ``config.brain_mask``.
    Voxels of the model grid outside the CE-T1's field of view (never measured, zero-filled
    by resampling) are never brain, so they never hold a lesion.
    """
    ce_t1 = images[0]
    grid = axis_aligned_grid(ce_t1, config.spacing_mm)
    too_large = model_grid_problem(ce_t1, grid.size_xyz, grid.spacing_xyz)
    if too_large:
        raise InputError(too_large)
    on_grid = [resample(sitk.Cast(im, sitk.sitkFloat32), grid) for im in images]
    fov = field_of_view_mask(Grid.of(ce_t1), grid)
    brain, mask_run = _brain(images, on_grid, grid, fov, config, brain_mask)
    brain &= fov
    if not brain.any():
        raise InputError("the brain mask is empty; check the image or pass --brain-mask.")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge") as pool:
        # both single-threaded NumPy / SciPy with the GIL released: one core each (~0.1 s a case)
        edge = pool.submit(edge_ml, brain, fov, grid.spacing_xyz)
        gate = dilate_mm(brain, config.mask_dilation_mm, grid.spacing_xyz) & fov
        brain_at_edge_ml = edge.result()
    margin = [int(np.ceil(config.crop_margin_mm / s)) for s in grid.spacing_xyz[::-1]]
    box = _crop_box(gate, margin)
    channels = _channels([sitk.GetArrayViewFromImage(im)[box] for im in on_grid], brain[box], gate[box],
                         images, config, lambda mask: sitk.GetArrayFromImage(resample(mask, grid, linear=False))[box])
    start_xyz = [s.start for s in box[::-1]]
    size_xyz = [s.stop - s.start for s in box[::-1]]
    geometry = Geometry(Grid.of(ce_t1), grid.crop(start_xyz, size_xyz))
    voxel_ml = float(np.prod(grid.spacing_xyz)) / 1000.0
    return Preprocessed(np.stack(channels), np.ascontiguousarray(gate[box]), geometry,
                        float(brain.sum()) * voxel_ml, mask_run, float((~fov).sum()) * voxel_ml,
                        brain_at_edge_ml, np.ascontiguousarray(brain[box]))


def preprocess_shifted(images: list[sitk.Image], first: Preprocessed, offset_vox_xyz,
                       config: PreprocessConfig) -> Preprocessed:
    """``images`` on ``first``'s cropped model grid moved by ``offset_vox_xyz`` model voxels (x, y,
    z; fractions), for test-time grid shifts (:mod:`~BrainMetSegLib.grid_shifts`): resampled from
    the images themselves, with ``first``'s brain mask and dilated gate put on the moved grid
    (nearest) instead of being made again, and normalised over that brain as :func:`preprocess`
    does. Only ``array``, ``brain``, ``geometry`` and ``brain_undilated`` are filled."""
    grid = first.geometry.model_grid.shifted(offset_vox_xyz)
    fov = field_of_view_mask(first.geometry.input_grid, grid)
    gate, brain = (sitk.GetArrayFromImage(resample(first.geometry.model_grid.image_from_array(m.astype(np.uint8)),
                                                   grid, linear=False)).astype(bool) & fov
                   for m in (first.brain, first.brain_undilated))
    if not brain.any():
        raise InputError("the brain mask is empty on a shifted model grid.")
    arrays = [sitk.GetArrayFromImage(resample(sitk.Cast(im, sitk.sitkFloat32), grid)) for im in images]
    channels = _channels(arrays, brain, gate, images, config,
                         lambda mask: sitk.GetArrayFromImage(resample(mask, grid, linear=False)))
    return Preprocessed(np.stack(channels), gate, Geometry(first.geometry.input_grid, grid),
                        brain_undilated=brain)
