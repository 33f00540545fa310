"""Soft (anti-aliased) painting of tubes into voxel arrays, in local bounding boxes."""

from __future__ import annotations

import numpy as np


def resample_polyline(points: np.ndarray, radii: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_mm`` along a polyline (RAS mm) with linearly interpolated radii."""
    pts = np.asarray(points, float)
    radii = np.asarray(radii, float)
    dense, dense_r = [], []
    for a, b, ra, rb in zip(pts[:-1], pts[1:], radii[:-1], radii[1:], strict=True):
        n = max(int(np.linalg.norm(b - a) / step_mm), 1)
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        dense.append(a + t * (b - a))
        dense_r.append(ra + t[:, 0] * (rb - ra))
    dense.append(pts[-1:])
    dense_r.append(radii[-1:])
    return np.concatenate(dense), np.concatenate(dense_r)


def paint_tube(occ: np.ndarray, origin_ras, spacing, points_ras, radii_mm) -> None:
    """Raise ``occ`` (z, y, x) to the soft occupancy of a tube through RAS points, in place.

    Occupancy is 1 inside, 0 outside, linear over one voxel at the wall (partial volume).
    """
    sp = np.asarray(spacing, float)[::-1]  # (z, y, x) spacing
    origin = np.asarray(origin_ras, float)
    h = float(np.mean(sp))
    dense, dense_r = resample_polyline(points_ras, radii_mm, min(0.5, h / 2))
    shape = np.array(occ.shape)
    for p, r in zip(dense, dense_r, strict=True):
        idx = ((p - origin)[::-1]) / sp
        reach = (r + h) / sp
        lo = np.maximum(np.floor(idx - reach).astype(int), 0)
        hi = np.minimum(np.ceil(idx + reach).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d = np.sqrt(((zz - idx[0]) * sp[0]) ** 2 + ((yy - idx[1]) * sp[1]) ** 2 + ((xx - idx[2]) * sp[2]) ** 2)
        sub = occ[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(sub, np.clip((r - d) / h + 0.5, 0, 1).astype(occ.dtype), out=sub)
