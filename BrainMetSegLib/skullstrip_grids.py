"""Where deepbet runs: the grid decides what it sees, and so the brain mask of an oblique scan.

deepbet (:mod:`.skullstrip`) finds its brain box on a 128^3 thumbnail of the whole array it is
given, then segments that box resized to 256^3, in the array's own axes taken as the head's
(RAS). Two ways to hand it an oblique scan fail (docs/robustness.md, phantoms tilted 30 + 30
degrees):

- the axis-aligned model grid as a whole: it covers the tilted scan's box, 4-15x the head's
  volume (synth_007: 470 x 463 x 540 mm), so the head fills a third of the thumbnail along
  each axis and the box finder takes most of the array: 11,993 mL instead of 1,890 mL. The
  upright original padded with its own background level into the same box fails alike
  (19,349 mL), so the size, not the zero-filled wedges or the orientation, is the cause;
- the scan's own planes (:func:`deepbet_on_input_axes`): the array's axes are tilted against
  the head, so deepbet's "up" is not the head's (2,493 mL, extracerebral tissue let in).

:func:`deepbet_on_world_axes` gives it the model grid (L, P, S axes, the anatomy's own axes for
a head lying straight in the scanner) cropped to the head's box plus a margin, with the voxels
the scan never measured set to the scan's background level: the view of an axial scan. No
extra resampling: the crop is a block of the model grid and the mask goes back in place.
A head tilted in the scanner is not straightened by this (a rigid registration to a template
would be; not done).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .acquisition import OBLIQUITY_TOLERANCE_DEG
from .geometry import Grid, covering_grid, nearest_axes_direction, obliquity_deg, resample
from .options import Device

#: Head voxels: above this fraction of the 99th percentile of the measured voxels (air below).
HEAD_LEVEL = 0.1
#: Margin (mm) around the head's box for deepbet's array (deepbet adds 10 % around its brain box).
HEAD_MARGIN_MM = 10.0
#: The head's box is found on the model grid sampled about this coarsely (mm).
HEAD_SAMPLING_MM = 3.0


def is_oblique(direction) -> bool:
    """True when an axis of ``direction`` (row-major 3x3) is further from L, P or S than the few
    degrees a hand-planned axial scan is off (:data:`~.acquisition.OBLIQUITY_TOLERANCE_DEG`)."""
    return obliquity_deg(direction) > OBLIQUITY_TOLERANCE_DEG


def head_box(array_zyx: np.ndarray, fov: np.ndarray, spacing_xyz,
             margin_mm: float = HEAD_MARGIN_MM) -> tuple[slice, ...]:
    """(Z, Y, X) slices of ``array_zyx`` holding the head plus ``margin_mm``.

    The head: the largest connected component of the measured (``fov``) voxels above
    :data:`HEAD_LEVEL` x their 99th percentile, opened once so noise speckles drop out, found on
    the array sampled every ~:data:`HEAD_SAMPLING_MM` mm. The whole array when none is found.
    """
    step = [max(1, int(round(HEAD_SAMPLING_MM / s))) for s in spacing_xyz[::-1]]
    coarse = tuple(slice(None, None, k) for k in step)
    small, measured = array_zyx[coarse], fov[coarse]
    values = small[measured]
    if values.size == 0:
        return tuple(slice(0, n) for n in array_zyx.shape)
    head = ndimage.binary_opening((small > HEAD_LEVEL * np.percentile(values, 99)) & measured)
    labels, n = ndimage.label(head)
    if n == 0:
        return tuple(slice(0, n) for n in array_zyx.shape)
    largest = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    box = []
    for axis, (k, size) in enumerate(zip(step, array_zyx.shape, strict=True)):
        idx = np.nonzero(largest.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        margin = int(np.ceil(margin_mm / spacing_xyz[2 - axis])) + k
        box.append(slice(max(int(idx[0]) * k - margin, 0), min(int(idx[-1]) * k + margin + 1, size)))
    return tuple(box)


def background_level(array_zyx: np.ndarray, fov: np.ndarray, step: int = 4) -> float:
    """The scan's air: median of the measured voxels below the head level, exact zeros left out
    (padding, not measurement); 0 when there are none (an image already zero outside)."""
    values = array_zyx[::step, ::step, ::step][fov[::step, ::step, ::step]]
    if values.size == 0:
        return 0.0
    air = values[(values < HEAD_LEVEL * np.percentile(values, 99)) & (values != 0)]
    return float(np.median(air)) if air.size else 0.0


def deepbet_on_world_axes(on_grid: np.ndarray, fov: np.ndarray, spacing_xyz, device: Device = Device.CPU,
                          bf16: bool = False, **engine) -> tuple[np.ndarray, dict]:
    """deepbet's brain mask (Z, Y, X) bool on the model grid of an oblique scan, run on the head's
    box of that grid (:func:`head_box`) with unmeasured voxels (``~fov``) at the scan's
    :func:`background_level`; never outside ``fov``.

    on_grid: the CE-T1 on the axis-aligned LPS model grid, (Z, Y, X); fov: (Z, Y, X) bool, where
    the scan measured; spacing_xyz: the grid's spacing (mm). Returns the mask and, for run.json,
    the box deepbet saw (size in mm, x y z) and the background level it was filled with.
    ``engine``: deepbet's other options (:func:`~.skullstrip.deepbet_mask`: OpenVINO, cache).
    """
    from .skullstrip import deepbet_mask

    box = head_box(on_grid, fov, spacing_xyz)
    level = background_level(on_grid, fov)
    array = np.where(fov[box], on_grid[box], np.float32(level)).astype(np.float32)
    mask = np.zeros(on_grid.shape, bool)
    mask[box] = deepbet_mask(array, device=device, bf16=bf16, **engine)
    size_mm = [round((b.stop - b.start) * s, 1) for b, s in zip(box[::-1], spacing_xyz, strict=True)]
    return mask & fov, {"box_mm_xyz": size_mm, "unmeasured_filled_with": round(level, 3)}


def deepbet_on_input_axes(ce_t1: sitk.Image, model_grid: Grid, device: Device = Device.CPU,
                          bf16: bool = False, **engine) -> np.ndarray:
    """deepbet's brain mask of ``ce_t1`` as a (Z, Y, X) bool array on ``model_grid``, run on a
    grid holding the scan's own planes (its axes reordered towards L, P, S,
    :func:`~BrainMetSegLib.geometry.nearest_axes_direction`) at the model spacing, covering
    exactly the scan's field of view; the mask is mapped once onto ``model_grid`` (nearest).
    ``engine``: :func:`~.skullstrip.deepbet_mask`'s other options (its ``grid``: the cube).

    Kept for comparison (``skullstrip_grid="input-axes"``, the default between issue 24's first
    and second steps): on an oblique scan the array's axes are not the head's (module docstring).
    """
    from .skullstrip import deepbet_mask

    source = Grid.of(ce_t1)
    strip = covering_grid(source.corners_lps(), model_grid.spacing_xyz, nearest_axes_direction(source.direction))
    array = sitk.GetArrayFromImage(resample(sitk.Cast(ce_t1, sitk.sitkFloat32), strip))
    mask = deepbet_mask(array, device=device, bf16=bf16, **engine).astype(np.uint8)
    return sitk.GetArrayFromImage(resample(strip.image_from_array(mask), model_grid, linear=False)) > 0
