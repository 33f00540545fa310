"""Real anatomy for the phantoms: the MNI152 2009 template (nilearn) and Colin27 (mricron-data).

Each template is prepared once per process (cached) into arrays in template voxel
space, (z, y, x) order, 1 mm, with a RAS affine whose axes are aligned with the
array axes. The prepared maps are what every case starts from:

* ``t1``: the template's T1 intensities, scaled so normal white matter is 1.0
  (whole head for Colin27, brain only for MNI152).
* ``gm``, ``wm``, ``csf``: tissue probability maps in [0, 1].
* ``residual``: what the tissue model does not explain (deep nuclei, texture); added
  back with a random weight so the anatomy keeps its real detail.
* ``sdist``: signed distance to the brain surface in mm (positive inside).
* ``code``: tissue (bits 0-1: 1 CSF, 2 GM, 3 WM) + region << 2 (see ``REGION_*``).

Regions are drawn from geometry in MNI space (both templates live there): the
cerebellum below a tilted tentorium plane, deep grey/white matter > 18 mm from the
surface, the grey-white junction where both tissue maps are present, the falx in the
interhemispheric fissure, sinuses along the outer brain outline, and the choroid
plexus glomus in the atria of the lateral ventricles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .painting import paint_tube

COLIN_DIR = Path("/usr/share/mricron/templates")

TISSUE_CSF, TISSUE_GM, TISSUE_WM = 1, 2, 3
REGION_OTHER, REGION_JUNCTION, REGION_CORTEX, REGION_CEREBELLUM = 0, 1, 2, 3
REGION_DEEP, REGION_VENTRICLE, REGION_BRAINSTEM = 4, 5, 6
#: Enhancing non-lesion structures (never labelled as lesion).
REGION_CHOROID, REGION_FALX, REGION_SINUS = 7, 8, 9
HULL_CLOSING_MM = 30.0
CONFOUNDER_REGIONS = {"choroid": REGION_CHOROID, "dura": REGION_FALX, "vessels": REGION_SINUS}


@dataclass(frozen=True)
class Template:
    """Prepared anatomy in template voxel space, arrays (z, y, x), 1 mm voxels."""

    name: str
    origin_ras: np.ndarray  # RAS mm of voxel (0, 0, 0)
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    residual: np.ndarray
    sdist: np.ndarray
    code: np.ndarray
    sinus: np.ndarray  # occupancy [0, 1] of the dural venous sinuses
    falx: np.ndarray  # occupancy [0, 1] of falx and tentorium (dura)
    choroid: np.ndarray  # occupancy [0, 1] of the choroid plexus
    has_skull: bool
    brain_centre_ras: np.ndarray
    head_box_ras: tuple[np.ndarray, np.ndarray]  # (min, max) RAS of the head (or brain)
    brain_box_ras: tuple[np.ndarray, np.ndarray]
    # Skull-stripped templates: voxels of a 22 mm shell around the closed brain outline
    # (flat indices) and their distance outside it (mm), for a synthetic skull and scalp.
    shell_index: np.ndarray | None = None
    shell_depth: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1.shape

    def ras_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RAS coordinates of the array axes: (x of columns, y of rows, z of slices)."""
        nz, ny, nx = self.shape
        o = self.origin_ras
        return o[0] + np.arange(nx), o[1] + np.arange(ny), o[2] + np.arange(nz)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance (mm, 1 mm voxels) to a mask's surface: > 0 inside, < 0 outside, the
    surface half-way between voxels (SimpleITK's Maurer transform, multi-threaded)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(d).astype(np.float32) + np.float32(0.5)


def _hull_depth(sdist: np.ndarray) -> np.ndarray:
    """Signed distance (mm, > 0 outside) to the brain outline closed by ``HULL_CLOSING_MM``,
    computed on a 2 mm grid (it only places the synthetic skull) and interpolated back."""
    import torch
    import torch.nn.functional as F

    pad = int(HULL_CLOSING_MM / 2) + 2  # room so the closing is not cut by the field of view
    coarse = np.pad(sdist[::2, ::2, ::2] > -HULL_CLOSING_MM, pad)
    dil = signed_distance(coarse) * 2.0  # 2 mm voxels
    hull = dil > HULL_CLOSING_MM
    depth = (-signed_distance(hull) * 2.0)[pad:-pad, pad:-pad, pad:-pad]
    t = torch.from_numpy(depth)[None, None]
    up = F.interpolate(t, size=tuple(2 * n for n in depth.shape), mode="trilinear", align_corners=False)
    return up[0, 0, : sdist.shape[0], : sdist.shape[1], : sdist.shape[2]].numpy()


def colin27_available() -> bool:
    """True when Debian's mricron-data (Colin27 with skull) is installed."""
    return (COLIN_DIR / "ch2.nii.gz").is_file() and (COLIN_DIR / "ch2bet.nii.gz").is_file()


def _as_zyx(nifti) -> tuple[np.ndarray, np.ndarray]:
    """Array in (z, y, x) order and RAS origin of a nibabel image with a diagonal 1 mm affine."""
    aff = nifti.affine
    if not np.allclose(aff[:3, :3], np.eye(3), atol=1e-3):
        raise InputError(f"template {nifti.get_filename()}: expected a 1 mm RAS-aligned affine.")
    data = np.asanyarray(nifti.dataobj).astype(np.float32)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), aff[:3, 3].astype(np.float64)


def _load_mni152():
    import warnings

    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1, origin = _as_zyx(datasets.load_mni152_template(resolution=1))
        gm, _ = _as_zyx(datasets.load_mni152_gm_template(resolution=1))
        wm, _ = _as_zyx(datasets.load_mni152_wm_template(resolution=1))
        brain, _ = _as_zyx(datasets.load_mni152_brain_mask(resolution=1))
    return t1, gm, wm, brain > 0.5, origin


def histogram_gmm(values: np.ndarray, n_classes: int = 3, iterations: int = 200) -> np.ndarray:
    """Posterior class probabilities (len(values), n_classes), classes by increasing mean, from a
    1D Gaussian mixture fitted by EM on the exact histogram of integer intensities.

    Working on the histogram (and a look-up table for the posteriors) keeps the result
    independent of thread counts and BLAS, so phantoms are byte-identical everywhere.
    """
    v = np.asarray(values).astype(np.int64)
    lo = int(v.min())
    counts = np.bincount(v - lo).astype(np.float64)
    x = np.arange(counts.size, dtype=np.float64) + lo
    cdf = np.cumsum(counts) / counts.sum()
    mu = np.array([x[np.searchsorted(cdf, q)] for q in np.linspace(0.1, 0.9, n_classes)], float)
    var = np.full(n_classes, np.var(v.astype(np.float64)) / n_classes**2)
    pi = np.full(n_classes, 1.0 / n_classes)
    for _ in range(iterations):
        like = pi / np.sqrt(2 * np.pi * var) * np.exp(-0.5 * (x[:, None] - mu) ** 2 / var)
        resp = like / np.maximum(like.sum(1, keepdims=True), 1e-300)
        w = resp * counts[:, None]
        nk = np.maximum(w.sum(0), 1e-9)
        mu = (w * x[:, None]).sum(0) / nk
        var = np.maximum((w * (x[:, None] - mu) ** 2).sum(0) / nk, 1.0)
        pi = nk / nk.sum()
    order = np.argsort(mu)
    return resp[:, order][v - lo]


def _load_colin27():
    import nibabel as nib

    head, origin = _as_zyx(nib.load(str(COLIN_DIR / "ch2.nii.gz")))
    bet, _ = _as_zyx(nib.load(str(COLIN_DIR / "ch2bet.nii.gz")))
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(bet > 0, iterations=2))
    # Three-class intensity model (CSF, GM, WM) gives soft tissue maps for Colin27.
    post = histogram_gmm(head[brain], 3).astype(np.float32)
    maps = []
    for c in range(3):
        m = np.zeros(head.shape, np.float32)
        m[brain] = post[:, c]
        maps.append(ndimage.gaussian_filter(m, 0.5))
    _, gm, wm = maps
    return head, gm, wm, brain, origin


def _tube_occupancy(shape, origin, points_ras, radii_mm) -> np.ndarray:
    """Soft occupancy (0..1) of a tube through RAS points with per-point radii (1 mm grid)."""
    occ = np.zeros(shape, np.float32)
    paint_tube(occ, origin, (1.0, 1.0, 1.0), points_ras, radii_mm)
    return occ


def _outline_point(brain, origin, start, direction, offset_mm) -> np.ndarray | None:
    """Last brain point along a ray from ``start`` (RAS), pushed ``offset_mm`` outward."""
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    pts = start + np.arange(0, 140, 0.5)[:, None] * direction
    idx = np.round((pts - origin)[:, ::-1]).astype(int)  # (z, y, x)
    ok = np.all((idx >= 0) & (idx < brain.shape), axis=1)
    ok = np.cumprod(ok).astype(bool)  # stop at the first step outside the volume
    idx = idx[ok]
    # A 5 mm wide column (x +-2) so the interhemispheric fissure does not stop the ray early.
    hit = np.zeros(len(idx), bool)
    for dx in range(-2, 3):
        x = np.clip(idx[:, 2] + dx, 0, brain.shape[2] - 1)
        hit |= brain[idx[:, 0], idx[:, 1], x]
    if not hit.any():
        return None
    return pts[ok][np.flatnonzero(hit)[-1]] + offset_mm * direction


def _sinus_paths(brain, origin) -> list[tuple[np.ndarray, np.ndarray]]:
    """Polylines (RAS points, radii mm) of the superior sagittal, transverse and straight sinuses."""
    centre = np.array([0.0, -18.0, 12.0])
    paths = []
    # Superior sagittal sinus: frontal pole over the vertex to the torcular (midline).
    pts, radii = [], []
    for phi in np.deg2rad(np.arange(25, 206, 5)):
        d = np.array([0.0, np.cos(phi), np.sin(phi)])
        p = _outline_point(brain, origin, centre, d, 2.0)
        if p is not None:
            pts.append(p)
            radii.append(1.5 + 2.5 * (phi - np.deg2rad(25)) / np.deg2rad(180))
    if len(pts) > 2:
        paths.append((np.array(pts), np.array(radii)))
        torcular = pts[-1]
        # Transverse sinuses: from the torcular laterally along the occipital outline.
        for side in (-1.0, 1.0):
            tp, tr = [torcular], [radii[-1]]
            c2 = np.array([0.0, -35.0, torcular[2]])
            for psi in np.deg2rad(np.arange(8, 80, 6)):
                d = np.array([side * np.sin(psi), -np.cos(psi), -0.15])
                p = _outline_point(brain, origin, c2, d, 2.5)
                if p is not None:
                    tp.append(p)
                    tr.append(3.2)
            if len(tp) > 2:
                paths.append((np.array(tp), np.array(tr)))
        # Straight sinus: torcular to the vein of Galen behind the splenium.
        galen = np.array([0.0, -48.0, 6.0])
        paths.append((np.array([torcular, galen]), np.array([2.5, 2.0])))
        # Internal cerebral veins: paired, in the roof of the third ventricle, joining at Galen.
        for side in (-1.0, 1.0):
            icv = np.array([[side * 3.0, -2.0, 14.0], [side * 3.0, -20.0, 14.0], [side * 2.5, -38.0, 10.0], galen])
            paths.append((icv, np.array([1.0, 1.2, 1.4, 1.8])))
    return paths


def _region_code(t1_shape, origin, gm, wm, csf, brain, sdist) -> np.ndarray:
    nz, ny, nx = t1_shape
    x = (origin[0] + np.arange(nx))[None, None, :]
    y = (origin[1] + np.arange(ny))[None, :, None]
    z = (origin[2] + np.arange(nz))[:, None, None]
    tissue = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1
    tissue[~brain] = 0
    region = np.zeros(t1_shape, np.uint8)
    # Tentorium approximated by a plane tilted down towards the back and the sides.
    below_tent = (y < -42) & (z < -8 + 0.45 * (y + 60) - 0.3 * np.abs(x))
    brainstem = (np.abs(x) < 14) & (y > -48) & (y < -8) & (z < -8)
    gms, wms = ndimage.gaussian_filter(gm, 1.2), ndimage.gaussian_filter(wm, 1.2)
    tissue_ok = brain & (tissue >= TISSUE_GM)
    region[tissue_ok & (gms > 0.25) & (wms > 0.25) & (sdist > 3)] = REGION_JUNCTION
    region[tissue_ok & (tissue == TISSUE_GM) & (sdist <= 6) & (region == 0)] = REGION_CORTEX
    region[tissue_ok & (sdist > 18)] = REGION_DEEP
    region[brain & (tissue == TISSUE_CSF) & (sdist > 10)] = REGION_VENTRICLE
    region[brain & below_tent & ~brainstem] = REGION_CEREBELLUM
    region[brain & brainstem] = REGION_BRAINSTEM
    return tissue, region


def _choroid(shape, origin, csf, brain, sdist) -> np.ndarray:
    """Choroid plexus glomus in each atrium: a ball of ventricle voxels around the atrium centre."""
    nz, ny, nx = shape
    occ = np.zeros(shape, np.float32)
    # Search box around the atria in MNI space (x 12-40 mm either side, y -52..-22, z -2..28).
    zr = slice(max(int(-2 - origin[2]), 0), min(int(28 - origin[2]), nz))
    yr = slice(max(int(-52 - origin[1]), 0), min(int(-22 - origin[1]), ny))
    for side in (-1, 1):
        x0, x1 = sorted((int(side * 12 - origin[0]), int(side * 40 - origin[0])))
        xr = slice(max(x0, 0), min(x1, nx))
        box = (zr, yr, xr)
        vent = brain[box] & (csf[box] > 0.5) & (sdist[box] > 10)
        idx = np.argwhere(vent)
        if len(idx) < 20:
            continue
        c = idx.mean(0) + [zr.start, yr.start, xr.start]
        lo = np.maximum(np.floor(c - 8).astype(int), 0)
        hi = np.minimum(np.ceil(c + 9).astype(int), shape)
        ball = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        zz, yy, xx = np.ogrid[ball]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        sub = np.clip(6.5 - d, 0, 1) * np.clip((csf[ball] - 0.3) / 0.4, 0, 1) * brain[ball]
        occ[ball] = np.maximum(occ[ball], sub)
    return occ


def _falx(shape, origin, csf, brain, sdist) -> np.ndarray:
    """Falx cerebri: a thin midline sheet in the interhemispheric fissure above the corpus callosum."""
    nz, ny, nx = shape
    x = (origin[0] + np.arange(nx))[None, None, :]
    y = (origin[1] + np.arange(ny))[None, :, None]
    z = (origin[2] + np.arange(nz))[:, None, None]
    # About 1 mm thick: full occupancy on the midline voxel, 0.2 on its neighbours.
    profile = np.clip(1.2 - np.abs(x), 0, 1).astype(np.float32)
    region = (z > 22) & (y > -95) & (y < 60) & (sdist > -3) & ((csf > 0.3) | ~brain)
    return profile * region


@functools.lru_cache(maxsize=4)
def load_template(name: str) -> Template:
    """Load and prepare a template (``"mni152"`` or ``"colin27"``); cached per process."""
    if name == "mni152":
        t1, gm, wm, brain, origin = _load_mni152()
        has_skull = False
    elif name == "colin27":
        if not colin27_available():
            raise InputError(
                f"{COLIN_DIR}/ch2.nii.gz: Colin27 is not installed (Debian package mricron-data); "
                "use anatomy 'mni152' or 'auto'."
            )
        t1, gm, wm, brain, origin = _load_colin27()
        has_skull = True
    else:
        raise InputError(f"anatomy {name!r}: use mni152 or colin27.")
    gm = np.clip(gm, 0, 1) * brain
    wm = np.clip(wm, 0, 1) * brain
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    wm_level = float(np.median(t1[brain & (wm > 0.9)]))
    t1 = t1 / wm_level
    # Least-squares tissue means; the residual keeps the anatomy's own detail.
    sel = brain & (ndimage.binary_erosion(brain, iterations=2))
    # Normal equations from plain (pairwise, thread-independent) sums rather than LAPACK.
    cols = [csf[sel].astype(np.float64), gm[sel].astype(np.float64), wm[sel].astype(np.float64)]
    target = t1[sel].astype(np.float64)
    gram = np.array([[np.sum(a * b) for b in cols] for a in cols])
    means = np.linalg.solve(gram, np.array([np.sum(a * target) for a in cols]))
    residual = np.where(brain, t1 - (csf * means[0] + gm * means[1] + wm * means[2]), 0)
    residual = np.clip(residual, -0.35, 0.35).astype(np.float32)
    sdist = signed_distance(brain)
    tissue, region = _region_code(t1.shape, origin, gm, wm, csf, brain, sdist)
    sinus = np.zeros(t1.shape, np.float32)
    for pts, radii in _sinus_paths(brain, origin):
        np.maximum(sinus, _tube_occupancy(t1.shape, origin, pts, radii), out=sinus)
    falx = _falx(t1.shape, origin, csf, brain, sdist)
    choroid = _choroid(t1.shape, origin, csf, brain, sdist)
    region[choroid >= 0.5] = REGION_CHOROID
    region[falx >= 0.5] = REGION_FALX
    region[sinus >= 0.5] = REGION_SINUS
    code = (tissue | (region << 2)).astype(np.uint8)
    idx = np.argwhere(brain)
    bmin, bmax = origin + idx.min(0)[::-1], origin + idx.max(0)[::-1]
    head = t1 > 0.08 if has_skull else brain
    hidx = np.argwhere(head)
    hmin, hmax = origin + hidx.min(0)[::-1], origin + hidx.max(0)[::-1]
    centre = origin + idx.mean(0)[::-1]
    shell_index = shell_depth = None
    if not has_skull:
        t1 = np.where(brain, t1, 0).astype(np.float32)
        # Close the brain outline so the skull spans the gaps between lobes.
        depth = _hull_depth(sdist)
        shell = (depth <= 22.0) & ~brain
        shell_index = np.flatnonzero(shell)
        shell_depth = depth.ravel()[shell_index].astype(np.float32)
        hidx = np.argwhere(depth <= 20.0)
        hmin, hmax = origin + hidx.min(0)[::-1], origin + hidx.max(0)[::-1]
    return Template(
        name=name, origin_ras=origin, t1=t1.astype(np.float32), gm=gm.astype(np.float32),
        wm=wm.astype(np.float32), csf=csf.astype(np.float32), residual=residual, sdist=sdist,
        code=code, sinus=sinus, falx=falx, choroid=choroid, has_skull=has_skull,
        brain_centre_ras=centre, head_box_ras=(hmin, hmax), brain_box_ras=(bmin, bmax),
        shell_index=shell_index, shell_depth=shell_depth,
    )


def available_anatomies() -> tuple[str, ...]:
    return ("mni152", "colin27") if colin27_available() else ("mni152",)
