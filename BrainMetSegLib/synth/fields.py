"""Smooth random fields from a coarse control grid (separable cubic B-spline).

A field on an (nz, ny, nx) grid is evaluated axis by axis (separable tensor
product), so a smooth deformation, bias field or thickness map costs a few
multiply-adds per voxel instead of a full 3D interpolation. Sums run in a fixed
order without BLAS so the result does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np


def _bspline3(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def basis(n: int, c: int) -> np.ndarray:
    """(n, c) weights of ``c`` control points spread evenly over ``n`` samples (rows sum to 1)."""
    u = np.linspace(0, c - 1, n)[:, None]
    w = _bspline3(u - np.arange(c)[None, :])
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _contract(a: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """Sum over ``axis`` of ``a`` weighted by ``w`` (n, c), as a fixed-order sum of broadcast
    products (no BLAS: results do not depend on the number of threads)."""
    a = np.moveaxis(a, axis, -1)
    out = np.zeros((*a.shape[:-1], w.shape[0]), np.float32)
    for k in range(w.shape[1]):
        out += a[..., k:k + 1] * w[:, k]
    return np.moveaxis(out, -1, axis)


def smooth_field(coarse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Evaluate control values ``coarse`` (cz, cy, cx) on a grid of ``shape`` (nz, ny, nx), float32."""
    cz, cy, cx = coarse.shape
    nz, ny, nx = shape
    a = _contract(coarse.astype(np.float32), basis(nx, cx), 2)  # (cz, cy, nx)
    a = _contract(a, basis(ny, cy), 1)  # (cz, ny, nx)
    # Last axis: accumulate whole (ny, nx) planes per control point.
    wz = basis(nz, cz)
    out = np.zeros((nz, ny, nx), np.float32)
    for k in range(cz):
        out += wz[:, k, None, None] * a[k][None]
    return out


def random_smooth(rng: np.random.Generator, shape, control_mm: float, spacing, low=-1.0, high=1.0) -> np.ndarray:
    """Smooth field, one uniform control value every ``control_mm`` (at least 4 per axis)."""
    extent = np.array(shape) * np.asarray(spacing, float)[::-1]
    c = np.maximum(np.ceil(extent / control_mm).astype(int) + 1, 4)
    return smooth_field(rng.uniform(low, high, tuple(c)), tuple(shape))
