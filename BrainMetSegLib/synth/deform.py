"""Random "patients" from one template: random affine + smooth elastic deformation.

The warp maps every output voxel to a point in template space; the template's
maps are sampled there with torch ``grid_sample`` (trilinear for intensities and
distances, nearest for the tissue/region code). The output grid is RAS-aligned:
voxel (i, j, k) sits at ``origin_ras + (i, j, k) * spacing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .templates import Template


@dataclass(frozen=True)
class OutputGrid:
    """RAS-aligned output grid: array shape (z, y, x), spacing (x, y, z) mm, origin RAS mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin_ras: np.ndarray

    def ras_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RAS coordinate of each column (x), row (y) and slice (z)."""
        nz, ny, nx = self.shape
        o, s = self.origin_ras, self.spacing
        return o[0] + s[0] * np.arange(nx), o[1] + s[1] * np.arange(ny), o[2] + s[2] * np.arange(nz)

    def index_to_ras(self, zyx: np.ndarray) -> np.ndarray:
        """(..., 3) voxel indices in (z, y, x) order to RAS mm (..., 3) in (r, a, s) order."""
        zyx = np.asarray(zyx, float)
        return self.origin_ras + zyx[..., ::-1] * np.asarray(self.spacing)

    def ras_to_index(self, ras: np.ndarray) -> np.ndarray:
        """RAS mm (..., 3) to fractional voxel indices (..., 3) in (z, y, x) order."""
        return ((np.asarray(ras, float) - self.origin_ras) / np.asarray(self.spacing))[..., ::-1]


@dataclass(frozen=True)
class Warp:
    """Output RAS point p maps to template RAS point ``matrix @ (p - centre) + centre + shift + elastic(p)``."""

    matrix: np.ndarray
    centre: np.ndarray
    shift: np.ndarray
    elastic_mm: np.ndarray  # (3, cz, cy, cx) displacement (RAS components) on a coarse grid
    flipped: bool


def output_grid(template: Template, spacing, field_of_view: str, margin_mm: float,
                skull: bool) -> OutputGrid:
    """Grid covering the template's head (or brain + margin), centred on the brain."""
    if field_of_view == "brain" or not (skull or template.has_skull):
        lo, hi = template.brain_box_ras
        lo, hi = lo - margin_mm, hi + margin_mm
    else:
        lo, hi = template.head_box_ras
        if not template.has_skull:
            lo, hi = lo - 14.0, hi + 14.0  # room for the synthetic skull and scalp
    centre = template.brain_centre_ras
    half = np.maximum(centre - lo, hi - centre)
    sp = np.asarray(spacing, float)
    n = np.ceil(2 * half / sp).astype(int) + 1
    origin = centre - (n - 1) * sp / 2
    return OutputGrid(shape=(int(n[2]), int(n[1]), int(n[0])), spacing=tuple(sp), origin_ras=origin)


def _rotation(angles) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_warp(rng: np.random.Generator, template: Template, strength: float = 1.0) -> Warp:
    """Draw a patient: rotation +-8 deg, scale 0.9-1.1 (+-4 % per axis), small shear,
    shift +-5 mm, left-right mirror half of the time, elastic displacement ~2.5 mm
    (smooth, on a 16 mm control grid)."""
    s = strength
    rot = _rotation(np.deg2rad(rng.uniform(-8, 8, 3) * s))
    scale = rng.uniform(0.92, 1.08) ** s * rng.uniform(0.96, 1.04, 3) ** s
    shear = np.eye(3) + np.triu(rng.uniform(-0.04, 0.04, (3, 3)) * s, 1)
    flipped = bool(rng.random() < 0.5) if s > 0 else False
    mirror = np.diag([-1.0 if flipped else 1.0, 1.0, 1.0])
    # Output -> template: inverse of the patient's size, so scale < 1 makes a bigger head.
    matrix = mirror @ rot @ shear @ np.diag(1.0 / scale)
    shift = rng.uniform(-5, 5, 3) * s
    lo, hi = template.head_box_ras
    cshape = np.maximum(np.ceil((hi - lo + 80) / 16.0).astype(int), 3)[::-1]
    coarse = rng.normal(0.0, 2.5 * s, (3, *cshape))
    coarse = np.stack([ndimage.gaussian_filter(c, 0.7, mode="nearest") for c in coarse])
    # Gaussian smoothing lowers the spread: bring the displacement back to ~2.5 mm RMS.
    if s > 0:
        coarse *= 2.5 * s / max(float(coarse.std()), 1e-6)
    return Warp(matrix=matrix, centre=template.brain_centre_ras.copy(), shift=shift,
                elastic_mm=coarse.astype(np.float32), flipped=flipped)


def warp_maps(template: Template, grid: OutputGrid, warp: Warp, linear: list[np.ndarray],
              nearest: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sample template-space maps on the output grid (trilinear / nearest), zeros outside."""
    import torch
    import torch.nn.functional as F

    nz, ny, nx = grid.shape
    xr, yr, zr = grid.ras_axes()
    c = warp.centre
    m = warp.matrix
    # Template voxel index along each RAS axis, built by broadcasting (affine part) ...
    tshape = np.array(template.shape)[::-1]  # (nx, ny, nz) of the template
    rel = (xr - c[0])[None, None, :], (yr - c[1])[None, :, None], (zr - c[2])[:, None, None]
    comps = []
    for a in range(3):
        comp = (m[a, 0] * rel[0] + m[a, 1] * rel[1]).astype(np.float32) + (m[a, 2] * rel[2]).astype(np.float32)
        comps.append(comp + np.float32(c[a] + warp.shift[a] - template.origin_ras[a]))
    grid_t = torch.from_numpy(np.stack(np.broadcast_arrays(*comps), axis=-1)[None].copy())
    # ... plus the elastic displacement, upsampled from its coarse grid.
    elastic = torch.from_numpy(warp.elastic_mm[None])
    elastic = F.interpolate(elastic, size=(nz, ny, nx), mode="trilinear", align_corners=True)
    grid_t += elastic[0].permute(1, 2, 3, 0)
    # grid_sample wants (x, y, z) in [-1, 1] (align_corners=True: -1 and 1 are the end voxels).
    scale = torch.tensor(2.0 / (tshape - 1), dtype=torch.float32)
    grid_t.mul_(scale).sub_(1.0)
    out_lin, out_near = [], []
    if linear:
        src = torch.from_numpy(np.stack(linear)[None])
        res = F.grid_sample(src, grid_t, mode="bilinear", padding_mode="zeros", align_corners=True)
        out_lin = [r.numpy() for r in res[0]]
    if nearest:
        src = torch.from_numpy(np.stack([n.astype(np.float32) for n in nearest])[None])
        res = F.grid_sample(src, grid_t, mode="nearest", padding_mode="zeros", align_corners=True)
        out_near = [r.numpy() for r in res[0]]
    return out_lin, out_near
