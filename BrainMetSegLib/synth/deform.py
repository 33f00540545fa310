"""Random "patients" from one template: random affine + smooth elastic deformation.

The warp maps every output voxel to a point in template space; the template's
maps are sampled there with torch ``grid_sample`` (trilinear for intensities and
distances, nearest for the tissue/region code). The output grid is RAS-aligned:
voxel (i, j, k) sits at ``origin_ras + (i, j, k) * spacing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import smooth_field
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
    if field_of_view == "brain" or not skull:
        lo, hi = template.brain_box_ras
        lo, hi = lo - margin_mm, hi + margin_mm
    else:
        lo, hi = template.head_box_ras
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
    # One control point every ~20 mm; cubic B-spline smoothing divides the spread by ~2.8.
    cshape = np.maximum(np.ceil((hi - lo + 40) / 20.0).astype(int), 4)[::-1]
    coarse = rng.normal(0.0, 2.5 * s * 2.8, (3, *cshape))
    return Warp(matrix=matrix, centre=template.brain_centre_ras.copy(), shift=shift,
                elastic_mm=coarse.astype(np.float32), flipped=flipped)


def dense_grid(template: Template, grid: OutputGrid, warp: Warp):
    """Template position of every output voxel, as a torch grid (1, z, y, x, 3) for ``grid_sample``
    (x, y, z components normalised to [-1, 1] over the template, align_corners=True)."""
    import torch

    nz, ny, nx = grid.shape
    xr, yr, zr = grid.ras_axes()
    c, m = warp.centre, warp.matrix
    tshape = np.array(template.shape)[::-1]  # (nx, ny, nz) of the template
    out = np.empty((1, nz, ny, nx, 3), np.float32)
    rel = ((xr - c[0])[None, None, :], (yr - c[1])[None, :, None], (zr - c[2])[:, None, None])
    for a in range(3):
        # Affine part by broadcasting, elastic part from the coarse control grid; then to [-1, 1].
        comp = smooth_field(warp.elastic_mm[a], (nz, ny, nx))
        comp += (m[a, 0] * rel[0] + m[a, 1] * rel[1]).astype(np.float32)
        comp += (m[a, 2] * rel[2]).astype(np.float32)
        offset = c[a] + warp.shift[a] - template.origin_ras[a]
        scale = 2.0 / (tshape[a] - 1)
        out[0, ..., a] = comp * np.float32(scale) + np.float32(offset * scale - 1.0)
    return torch.from_numpy(out)


def sample(maps: list[np.ndarray], grid_t, mode: str = "bilinear") -> list[np.ndarray]:
    """Sample template-space maps (z, y, x) at a torch grid (zeros outside the template)."""
    import torch
    import torch.nn.functional as F

    src = torch.from_numpy(np.stack([np.asarray(m, np.float32) for m in maps])[None])
    res = F.grid_sample(src, grid_t, mode=mode, padding_mode="zeros", align_corners=True)
    return [r.numpy() for r in res[0]]
