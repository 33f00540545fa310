"""Metastases: how many, how big, where, and how they enhance; painted on the output grid.

Each lesion is a perturbed sphere described by a signed distance (mm, < 0 inside).
The ground-truth label is every voxel whose centre is inside; the image gets a soft
(partial-volume) occupancy of one voxel width at the edge. Larger lesions get
T1-hypointense vasogenic oedema, confined to white matter, painted first so the
lesions stay on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import config as C
from .anatomy import Anatomy
from .templates import (
    REGION_CEREBELLUM,
    REGION_CORTEX,
    REGION_DEEP,
    REGION_JUNCTION,
    TISSUE_GM,
)

LOCATION_REGIONS = {
    "gw_junction": REGION_JUNCTION,
    "cortical": REGION_CORTEX,
    "cerebellar": REGION_CEREBELLUM,
    "deep": REGION_DEEP,
}


@dataclass
class LesionSpec:
    """A planned lesion: design centre (RAS mm), nominal diameter (mm), pattern, location."""

    centre_ras: np.ndarray
    diameter_mm: float
    pattern: str
    location: str
    enhancement: float
    necrosis: float | None = None
    oedema: float | None = None  # oedema intensity relative to WM, None = no oedema
    oedema_extent: float = 0.0  # oedema radius / lesion radius
    shape: dict = field(default_factory=dict)


def draw_count(rng: np.random.Generator, n_lesions: int | None, stratum: str | None) -> tuple[int, str]:
    """Lesion count and its stratum (1-3 / 4-10 / > 10 drawn 41 / 30 / 29 %)."""
    if n_lesions is not None:
        stratum = next((k for k, (lo, hi) in C.STRATA.items() if lo <= n_lesions <= hi), ">10")
        return n_lesions, stratum if n_lesions > 0 else "0"
    if stratum is None:
        names = list(C.STRATUM_PROBABILITIES)
        stratum = names[rng.choice(len(names), p=list(C.STRATUM_PROBABILITIES.values()))]
    lo, hi = C.STRATA[stratum]
    if stratum == ">10":
        # Long tail: most such patients have 11-20 lesions, a few many more.
        n = lo + min(int(rng.geometric(1 / 5.0)) - 1, hi - lo)
    else:
        n = int(rng.integers(lo, hi + 1))
    return n, stratum


def draw_diameters(rng: np.random.Generator, n: int, diameter_range) -> np.ndarray:
    """Log-normal diameters (mm) around a per-case median, truncated to the range."""
    lo, hi = diameter_range
    median = rng.uniform(*C.MEDIAN_DIAMETER_RANGE_MM)
    median = min(max(median, lo), hi)
    out = np.empty(n)
    for i in range(n):
        for _ in range(50):
            d = median * np.exp(C.DIAMETER_LOG_SIGMA * rng.standard_normal())
            if lo <= d <= hi:
                break
        out[i] = min(max(d, lo), hi)
    return np.sort(out)[::-1]  # place big ones first: they are the hardest to fit


def _choose_pattern(rng, diameter: float, allowed: tuple[str, ...]) -> str:
    ok = [p for p in allowed if (p != "ring" or diameter >= C.RING_MIN_DIAMETER_MM)
          and (p != "irregular" or diameter >= C.IRREGULAR_MIN_DIAMETER_MM)]
    if not ok:
        ok = ["nodular"] if "nodular" in allowed else list(allowed)
    w = np.array([C.PATTERN_PROBABILITIES[p] for p in ok])
    if diameter >= 12:  # large lesions are more often necrotic (ring) or heterogeneous
        w = w * np.array([0.5 if p == "nodular" else 1.5 for p in ok])
    return ok[rng.choice(len(ok), p=w / w.sum())]


#: Outline perturbation per pattern: (relative amplitude, highest angular frequency).
SHAPE_ROUGHNESS = {"nodular": (0.06, 2), "ring": (0.1, 2), "irregular": (0.2, 3), "oedema": (0.3, 3)}


def _draw_shape(rng, pattern: str) -> dict:
    """Random low-order outline perturbation (a lobulated sphere)."""
    amp, fmax = SHAPE_ROUGHNESS[pattern]
    k = 4
    v = rng.standard_normal((k, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return {"dirs": v, "freq": rng.integers(1, fmax + 1, k).astype(float), "phase": rng.uniform(0, 2 * np.pi, k),
            "amp": amp * rng.uniform(0.5, 1.0, k) / np.sqrt(k) * 1.4}


def _texture(seed: int, shape, sigma_vox: float) -> np.ndarray:
    """Smooth zero-mean, unit-variance noise for lesion texture."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma_vox)
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def _box(grid, centre_ras, reach_mm):
    sp = np.asarray(grid.spacing, float)[::-1]
    idx = grid.ras_to_index(centre_ras)
    lo = np.maximum(np.floor(idx - reach_mm / sp).astype(int), 0)
    hi = np.minimum(np.ceil(idx + reach_mm / sp).astype(int) + 1, np.array(grid.shape))
    zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    rel = ((zz - idx[0]) * sp[0], (yy - idx[1]) * sp[1], (xx - idx[2]) * sp[2])  # mm, (z, y, x)
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])), rel


def _signed_distance(rel, radius_mm: float, shape: dict) -> np.ndarray:
    """Approximate signed distance (mm) to a perturbed sphere; rel = (dz, dy, dx) in mm."""
    dz, dy, dx = rel
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    rs = np.maximum(r, 1e-6)
    # Unit direction in RAS order (x, y, z) to match the random directions.
    rad = np.ones_like(r)
    for v, f, ph, a in zip(shape["dirs"], shape["freq"], shape["phase"], shape["amp"], strict=True):
        cosang = (dx * v[0] + dy * v[1] + dz * v[2]) / rs
        rad = rad + a * np.cos(f * np.pi * cosang + ph)
    return r - radius_mm * np.maximum(rad, 0.5)


def plan_lesions(rng: np.random.Generator, anatomy: Anatomy, n: int, diameter_range,
                 patterns: tuple[str, ...], avoid: np.ndarray) -> list[LesionSpec]:
    """Place ``n`` lesions in brain tissue, apart from each other and from ``avoid`` (confounders)."""
    region, tissue, sdist, grid = anatomy.region, anatomy.tissue, anatomy.sdist, anatomy.grid
    candidates = {name: np.flatnonzero((region == reg) & (tissue >= TISSUE_GM))
                  for name, reg in LOCATION_REGIONS.items()}
    names = [k for k in C.LOCATIONS if candidates[k].size]
    if not names:
        return []
    probs = np.array([C.LOCATIONS[k] for k in names])
    specs: list[LesionSpec] = []
    for d in draw_diameters(rng, n, diameter_range):
        for attempt in range(300):
            diam = d if attempt < 200 else max(d * 0.6, diameter_range[0])
            loc = names[rng.choice(len(names), p=probs / probs.sum())]
            flat = candidates[loc][rng.integers(candidates[loc].size)]
            zyx = np.array(np.unravel_index(flat, grid.shape), float)
            zyx += rng.uniform(-0.5, 0.5, 3)  # sub-voxel centre
            centre = grid.index_to_ras(zyx)
            radius = diam / 2
            pattern = _choose_pattern(rng, diam, patterns)
            reach = radius * (1.35 if pattern == "irregular" else 1.15) + 1.0
            depth = float(sdist[tuple(np.clip(np.round(zyx).astype(int), 0, np.array(grid.shape) - 1))])
            # Cortical lesions may reach the pial surface (at most 1.5 mm beyond it).
            need = reach - 1.5 if loc == "cortical" else reach
            if depth < need:
                continue
            if any(np.linalg.norm(centre - s.centre_ras) < reach + s.diameter_mm / 2 * 1.35 + 3.0
                   for s in specs):
                continue
            box, rel = _box(grid, centre, reach + 2.0)
            near = avoid[box]
            if near.any():
                dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
                if (near & (dist < reach + 2.0)).any():
                    continue
            spec = LesionSpec(centre_ras=centre, diameter_mm=float(diam), pattern=pattern, location=loc,
                              enhancement=float(rng.uniform(*C.ENHANCEMENT_RANGE)), shape=_draw_shape(rng, pattern))
            if pattern == "ring":
                spec.necrosis = float(rng.uniform(*C.NECROSIS_RANGE))
                spec.shape["rim_mm"] = float(np.clip(radius * rng.uniform(0.25, 0.45), 1.0, 4.0))
            if pattern == "irregular":
                spec.shape["low"] = float(rng.uniform(*C.IRREGULAR_LOW_RANGE))
                spec.shape["rim_mm"] = float(np.clip(radius * rng.uniform(0.2, 0.35), 1.0, 4.0))
            spec.shape["seed"] = int(rng.integers(2**31))
            if diam >= C.OEDEMA_MIN_DIAMETER_MM and rng.random() < 0.85:
                spec.oedema = float(rng.uniform(*C.OEDEMA_RANGE))
                spec.oedema_extent = float(rng.uniform(1.6, 3.2))
                spec.shape["oedema"] = _draw_shape(rng, "oedema")
            specs.append(spec)
            break
    return specs


def paint_oedema(image: np.ndarray, anatomy: Anatomy, spec: LesionSpec) -> None:
    """Darken white matter around a lesion (vasogenic oedema), in place."""
    if spec.oedema is None:
        return
    radius = spec.diameter_mm / 2 * spec.oedema_extent
    box, rel = _box(anatomy.grid, spec.centre_ras, radius * 1.5 + 2)
    sd = _signed_distance(rel, radius, spec.shape["oedema"])
    w = np.clip(-sd / (0.35 * radius), 0, 1) ** 0.7
    # Oedema spreads along white matter and spares the cortex.
    w *= np.clip(anatomy.local("wm", box) * 1.3, 0, 1) * (anatomy.sdist[box] > 0)
    sub = image[box]
    sub *= (1 - w * (1 - spec.oedema)).astype(np.float32)


def paint_lesion(image: np.ndarray, labels: np.ndarray, brain: np.ndarray, anatomy: Anatomy,
                 spec: LesionSpec, lesion_id: int) -> int:
    """Paint one lesion's intensities and its label (``lesion_id``); returns its voxel count."""
    grid = anatomy.grid
    radius = spec.diameter_mm / 2
    h = float(np.mean(grid.spacing))
    box, rel = _box(grid, spec.centre_ras, radius * 1.6 + 2 * h)
    sd = _signed_distance(rel, radius, spec.shape)
    occ = np.clip(0.5 - sd / h, 0, 1)
    # The brain mask is extended by the lesion afterwards (a cortical lesion may reach the
    # surface); only voxels well outside the brain (skull, scalp) are never labelled.
    inside = (sd < 0) & (anatomy.sdist[box] > -2.0)
    if not inside.any():
        # A lesion smaller than a voxel still marks the voxel holding its centre.
        idx = np.clip(np.round(grid.ras_to_index(spec.centre_ras)).astype(int), 0, np.array(grid.shape) - 1)
        local = tuple(int(i - s.start) for i, s in zip(idx, box, strict=True))
        inside[local] = bool(brain[tuple(idx)])
        occ[local] = max(occ[local], 0.5)
    texture = _texture(spec.shape["seed"], sd.shape, 1.5 / h)
    if spec.pattern == "nodular":
        value = spec.enhancement * (1 + 0.04 * texture)
    elif spec.pattern == "ring":
        # Rim of uneven thickness (+-35 %), as in necrotic metastases.
        rim_mm = spec.shape["rim_mm"] * np.clip(1 + 0.35 * _texture(spec.shape["seed"] + 1, sd.shape, 2.5 / h),
                                                0.5, 1.6)
        inner = np.clip(0.5 - (sd + rim_mm) / h, 0, 1)
        rim = spec.enhancement * (1 + 0.05 * texture)
        value = rim * (1 - inner) + spec.necrosis * inner
    else:
        # Heterogeneous: patchy enhancement over a non-enhancing/necrotic background, with an
        # irregular, thicker enhancing margin.
        patchy = np.clip(0.5 + 0.4 * texture, 0, 1)
        margin = np.clip(1 + sd / spec.shape["rim_mm"], 0, 1)
        weight = np.maximum(patchy, 0.85 * margin)
        value = spec.shape["low"] + (spec.enhancement - spec.shape["low"]) * weight
    sub = image[box]
    sub += (occ * (value - sub)).astype(np.float32)
    lab = labels[box]
    lab[inside & (lab == 0)] = lesion_id
    return int(inside.sum())
