"""Enhancing look-alikes drawn on the output grid: cortical veins, dura, skull and scalp.

The dural sinuses, falx and choroid plexus come with the template (see
``templates.py``); here the case gets its own cortical veins (bright tubes running
on the brain surface up towards the superior sagittal sinus), patchy enhancing
dura over the convexity. None of them is ever labelled as lesion.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .fields import random_smooth
from .painting import paint_tube
from .templates import REGION_BRAINSTEM, REGION_CEREBELLUM


def _sample(arr: np.ndarray, grid, ras: np.ndarray) -> float:
    idx = np.clip(np.round(grid.ras_to_index(ras)).astype(int), 0, np.array(grid.shape) - 1)
    return float(arr[tuple(idx)])


def _gradient(sdist: np.ndarray, grid, ras: np.ndarray) -> np.ndarray:
    """Gradient (RAS) of the signed distance at a point, by central differences over 2 mm."""
    g = np.zeros(3)
    for a in range(3):
        e = np.zeros(3)
        e[a] = 2.0
        g[a] = (_sample(sdist, grid, ras + e) - _sample(sdist, grid, ras - e)) / 4.0
    n = np.linalg.norm(g)
    return g / n if n > 1e-6 else g


def cortical_veins(rng: np.random.Generator, anatomy: Anatomy, n_veins: int) -> tuple[np.ndarray, list]:
    """Occupancy (z, y, x) of veins traced over the cerebral convexity towards the midline vertex."""
    grid, sdist = anatomy.grid, anatomy.sdist
    occ = np.zeros(grid.shape, np.float32)
    region = anatomy.region
    centre = anatomy.warp.centre
    surface = np.flatnonzero((sdist > 0) & (sdist < 2.0) & (region != REGION_CEREBELLUM)
                             & (region != REGION_BRAINSTEM))
    if surface.size == 0:
        return occ, []
    paths = []
    for _ in range(n_veins):
        p = grid.index_to_ras(np.array(np.unravel_index(surface[rng.integers(surface.size)], grid.shape), float))
        if p[2] < centre[2] - 15:
            continue
        target_depth = rng.uniform(-0.5, 1.5)  # on the surface or just inside a sulcus
        radius = rng.uniform(0.6, 1.4)
        pts = [p]
        heading = rng.standard_normal(3)
        for _step in range(int(rng.uniform(25, 70) / 1.5)):
            up = np.array([-0.6 * np.sign(p[0] - centre[0]), 0.0, 1.0])
            heading = 0.7 * heading / max(np.linalg.norm(heading), 1e-6) + 0.3 * up + 0.35 * rng.standard_normal(3)
            n = _gradient(sdist, grid, p)
            heading -= n * float(heading @ n)  # stay tangent to the surface
            heading /= max(np.linalg.norm(heading), 1e-6)
            p = p + 1.5 * heading
            # Pull back to the wanted depth along the surface normal.
            p = p + n * (target_depth - _sample(sdist, grid, p))
            if abs(p[0] - centre[0]) < 3 or _sample(sdist, grid, p) < -4:
                break
            pts.append(p)
        if len(pts) > 4:
            pts = np.array(pts)
            paint_tube(occ, grid.origin_ras, grid.spacing, pts, np.full(len(pts), radius))
            paths.append(pts)
    return occ, paths


def convexity_dura(rng: np.random.Generator, anatomy: Anatomy) -> np.ndarray:
    """Occupancy of thin, patchy enhancing dura 0.7-2.0 mm outside the brain surface,
    over the upper convexity (thickened pachymeningeal segments, not a continuous line)."""
    sd = anatomy.sdist
    shell = np.clip(1 - np.abs(sd + 1.35) / 0.7, 0, 1)
    patch = np.clip(random_smooth(rng, sd.shape, 25.0, anatomy.grid.spacing) * 3.0 - rng.uniform(0.6, 1.6), 0, 1)
    # Fade out below the level of the brain centre (the skull base is busy enough).
    z = anatomy.grid.ras_axes()[2] - anatomy.warp.centre[2]
    upper = np.clip((z + 10.0) / 20.0, 0, 1).astype(np.float32)[:, None, None]
    return (shell * patch * upper).astype(np.float32)

