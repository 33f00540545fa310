"""Lesion candidates and the features a candidate scorer judges them by.

A candidate is a lesion drawn at a low detection threshold (no minimum volume), outlined by
:func:`BrainMetSegLib.operating_point.lesion_labels_array`. Each is described by features
of its **core** — its voxels with probability above the candidate threshold — so the
features do not change with the card's outline threshold. Every feature is computed on the
input grid, in physical units, from three images of the same (Z, Y, X) geometry:

- the metastasis probability map;
- the CE-T1, z-scored within the brain (mean 0, SD 1 over brain voxels);
- the brain mask the pipeline gated the probability with (deepbet's, dilated 4 mm).

The features (:data:`FEATURES`) cover what tells a small metastasis from a small bright
look-alike: size, the network's confidence, shape (vessels are elongated, metastases round),
contrast against the surroundings, whether the enhancement continues beyond the candidate
(a vessel does), distance to the brain's edge (dura, sinuses, skull base), position, and the
scan's slice spacing: on thick 2D slices a small lesion is averaged with the tissue around it
(lower contrast, lower network confidence) and false candidates look otherwise, so a scorer
needs to know which acquisition it judges (from demo 2.3.0, docs/robustness.md). Neighbourhoods
(the contrast shell) are sized in mm per axis, so a thick slice does not widen them.
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

from .acquisition import slice_spacing_mm
from .lesions import Frame, component_diameters_mm, nonzero_box

FEATURES = (
    "log_volume_mm3",        # log of the core volume (mm^3)
    "log_diameter_mm",       # log of the core's longest 3D diameter (mm)
    "logit_max_probability",  # logit of the highest probability in the candidate
    "logit_mean_probability",  # logit of the mean probability over the core
    "high_fraction",         # fraction of core voxels with probability > 0.9
    "elongation",            # sqrt(largest / middle principal variance) of the core (1 = round)
    "flatness",              # sqrt(middle / smallest principal variance)
    "fill_ratio",            # core volume / volume of the sphere of its longest diameter
    "mean_intensity",        # mean CE-T1 z-score in the core
    "max_intensity",         # highest CE-T1 z-score in the core
    "contrast",              # mean z-score of the core minus that of a 2 mm shell around it
    "shell_sd",              # SD of the z-score in the shell
    "bright_shell_fraction",  # shell voxels brighter than halfway between shell median and core mean
    "log_bright_ratio",      # log(bright region / core voxels): enhancement beyond the candidate
    "bright_elongation",     # elongation of that bright region (vessels: long)
    "edge_distance_mm",      # distance of the core's peak to the brain mask's edge, capped (mm)
    "superior_fraction",     # height of the peak in the brain's extent, 0 inferior .. 1 superior
    "lateral_fraction",      # |left-right offset from the brain's centre| / half its width
    "slice_spacing_mm",      # the grid's coarsest spacing (mm): 1 for a 1 mm 3D scan, 5 for 5 mm 2D slices
)

SHELL_MM = 2.0        # width of the surrounding shell for contrast (mm)
CONTEXT_MM = 8.0      # margin of the box searched for enhancement beyond the candidate (mm)
EDGE_CAP_MM = 15.0    # distances to the brain edge are exact up to this cap (mm)
_EPS = 1e-4


def _logit(p: float) -> float:
    p = float(np.clip(p, _EPS, 1 - _EPS))
    return float(np.log(p / (1 - p)))


def zscore_within(image_kji: np.ndarray, brain_kji: np.ndarray) -> np.ndarray:
    """(Z, Y, X) float32 image z-scored by the mean and SD of its brain voxels."""
    return ZScoredWithin(image_kji, brain_kji).whole()


class ZScoredWithin:
    """:func:`zscore_within` computed where it is indexed: ``z[box]`` is ``zscore_within(image,
    brain)[box]`` (the same per-voxel float32 arithmetic), so the candidate features pay for
    their boxes instead of the whole image (~0.1-0.3 s a case). Once the boxes asked for add up
    to the image, the whole is computed once and sliced, so it never costs more than twice that.
    ``dtype``: the image is read as this type first (None: as it is), as ``image.astype(dtype)``
    would give it.
    """

    def __init__(self, image_kji: np.ndarray, brain_kji: np.ndarray, dtype=None):
        self.image, self.dtype = image_kji, dtype
        self.shape = image_kji.shape
        values = np.asarray(image_kji[brain_kji], dtype).astype(np.float64)
        self.empty = values.size == 0
        self.mean = 0.0 if self.empty else float(values.mean())
        self.sd = 1.0 if self.empty else float(values.std()) or 1.0
        self._computed = 0
        self._whole: np.ndarray | None = None

    def _z(self, part: np.ndarray) -> np.ndarray:
        if self.empty:
            return np.zeros(part.shape, np.float32)
        return ((np.asarray(part, self.dtype) - self.mean) / self.sd).astype(np.float32)

    def whole(self) -> np.ndarray:
        if self._whole is None:
            self._whole = self._z(self.image)
        return self._whole

    def __getitem__(self, box) -> np.ndarray:
        if self._whole is None:
            part = self.image[box]
            self._computed += part.size
            if self._computed <= self.image.size:
                return self._z(part)
        return self.whole()[box]


def _box(sl: tuple[slice, ...], margin_vox, shape) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(sl, margin_vox, shape, strict=True))


def _principal(points_mm: np.ndarray, spacing_kji: np.ndarray) -> np.ndarray:
    """Principal variances (descending, mm^2) of voxel centres, each voxel counted as a box
    (adds spacing^2 / 12 per axis, so a single voxel is not a point)."""
    cov = np.diag(spacing_kji ** 2 / 12.0)
    if len(points_mm) > 1:
        cov = cov + np.cov(points_mm.T, bias=True)
    return np.sort(np.linalg.eigvalsh(cov))[::-1]


def _mm_margin(mm: float, spacing_kji: np.ndarray) -> np.ndarray:
    return np.ceil(mm / spacing_kji).astype(int)


def shell_footprint(mm: float, spacing_kji: np.ndarray) -> np.ndarray:
    """Structuring element (odd-sized bool, Z, Y, X) reaching ``mm`` along each axis in voxels
    of that axis (n = ceil(mm / spacing)): offsets with sum |d| / n <= 1, a city-block ball
    scaled per axis. On an isotropic grid it is the 6-connected cross dilated n - 1 times
    (what n iterations of the cross reach); on 0.5 x 0.5 x 7 mm it reaches 2 mm in-plane and one
    slice, not n = 4 slices (28 mm) as iterating one cross would."""
    n = np.maximum(_mm_margin(mm, spacing_kji), 1)
    d = np.indices(2 * n + 1) - n.reshape(3, 1, 1, 1)
    return (np.abs(d) / n.reshape(3, 1, 1, 1)).sum(axis=0) <= 1 + 1e-9


def _brain_frame(brain_kji: np.ndarray, frame: Frame):
    """(lower, upper) RAS corners of the brain mask's index bounding box."""
    box = nonzero_box(np.asarray(brain_kji))
    if box is None:
        return np.zeros(3), np.ones(3)
    lo = np.array([b.start for b in box], float)
    hi = np.array([b.stop - 1 for b in box], float)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    ras = frame.lps(corners) * np.array([-1.0, -1.0, 1.0])
    return ras.min(axis=0), ras.max(axis=0)


def candidate_features(labels_kji: np.ndarray, prob_kji: np.ndarray, zimage_kji: np.ndarray,
                       brain_kji: np.ndarray, frame: Frame, core_threshold: float) -> np.ndarray:
    """Feature matrix (N, len(FEATURES)) float64 of candidates 1..N of a (Z, Y, X) label map.

    prob_kji: probability; zimage_kji: CE-T1 z-scored within the brain (:func:`zscore_within`);
    brain_kji: bool brain mask; frame: the grid's index -> LPS mapping (spacing, direction);
    core_threshold: the candidate detection threshold (a candidate's core is its voxels above
    it; a candidate without such voxels, impossible from ``lesion_labels``, uses all its voxels).
    """
    labels_kji = np.asarray(labels_kji)
    n = int(labels_kji.max(initial=0))
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    spacing_kji = np.linalg.norm(frame.matrix, axis=0)[::-1]
    core = np.where(prob_kji > core_threshold, labels_kji, 0)
    missing = np.setdiff1d(np.arange(1, n + 1), np.unique(core.ravel()[np.flatnonzero(core)]))  # the ids only
    if missing.size:
        core = np.where(np.isin(labels_kji, missing), labels_kji, core)
    diam = component_diameters_mm(core, n, frame)
    lo, hi = _brain_frame(brain_kji, frame)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1.0)
    boxes = ndimage.find_objects(core, max_label=n)
    margin = _mm_margin(max(SHELL_MM, CONTEXT_MM, EDGE_CAP_MM), spacing_kji)
    for c in range(n):
        box = _box(boxes[c], margin, labels_kji.shape)
        local = {"core": core[box] == c + 1, "lesion": labels_kji[box] == c + 1, "prob": prob_kji[box],
                 "z": zimage_kji[box], "brain": brain_kji[box],
                 "offset": np.array([s.start for s in box])}
        out[c] = _one(local, spacing_kji, frame, diam[c], centre, half)
    return out


def _one(local: dict, spacing_kji: np.ndarray, frame: Frame, diameter: float,
         centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Features of one candidate from arrays cropped around it (see :data:`FEATURES`)."""
    core, prob, z = local["core"], local["prob"], local["z"]
    voxels = int(core.sum())
    vvol = float(np.prod(spacing_kji))
    volume = voxels * vvol
    pts = np.argwhere(core) * spacing_kji
    ev = _principal(pts, spacing_kji)
    elong, flat = np.sqrt(ev[0] / ev[1]), np.sqrt(ev[1] / ev[2])
    d = max(diameter, float(spacing_kji.min()))
    fill = volume / (np.pi / 6 * d ** 3)
    zc = z[core]
    shell = ndimage.binary_dilation(local["lesion"], shell_footprint(SHELL_MM, spacing_kji))
    shell &= ~local["lesion"] & local["brain"]
    zs = z[shell] if shell.any() else np.zeros(1, np.float32)
    shell_median = float(np.median(zs))
    halfway = 0.5 * (shell_median + float(zc.mean()))
    peak = np.unravel_index(int(np.argmax(np.where(local["lesion"], prob, -1.0))), core.shape)
    bright_ratio, bright_elong = _bright_region(z, core, peak, halfway, spacing_kji)
    edge = _edge_distance(local["brain"], peak, spacing_kji)
    ras = frame.lps((np.asarray(peak) + local["offset"])[None].astype(float))[0] * np.array([-1.0, -1.0, 1.0])
    return np.array([
        np.log(volume), np.log(d), _logit(prob[local["lesion"]].max()), _logit(prob[core].mean()),
        float((prob[core] > 0.9).mean()), elong, flat, fill,
        float(zc.mean()), float(zc.max()), float(zc.mean()) - float(zs.mean()), float(zs.std()),
        float((zs > halfway).mean()), bright_ratio, bright_elong, edge,
        float(np.clip((ras[2] - (centre[2] - half[2])) / (2 * half[2]), 0, 1)),
        float(min(abs(ras[0] - centre[0]) / half[0], 1.5)), slice_spacing_mm(spacing_kji),
    ])


def _bright_region(z: np.ndarray, core: np.ndarray, peak, level: float, spacing_kji: np.ndarray):
    """log(size of the bright region holding the candidate / core size) and that region's
    elongation: the 26-connected region of ``z > level`` touching the core, inside the box."""
    bright = cc3d.connected_components(z > level, connectivity=26)
    ids = np.unique(bright[core])
    ids = ids[ids > 0]
    if not ids.size:
        return 0.0, 1.0
    region = np.isin(bright, ids) | core
    ev = _principal(np.argwhere(region) * spacing_kji, spacing_kji)
    return float(np.log(region.sum() / core.sum())), float(np.sqrt(ev[0] / ev[1]))


def _edge_distance(brain: np.ndarray, peak, spacing_kji: np.ndarray) -> float:
    """Distance (mm) from ``peak`` to the nearest voxel outside the brain mask, capped at
    :data:`EDGE_CAP_MM` (exact below the cap: the box reaches that far around the core)."""
    if not brain[peak]:
        return 0.0
    if brain.all():
        return EDGE_CAP_MM
    dist = ndimage.distance_transform_edt(brain, sampling=spacing_kji)
    return float(min(dist[peak], EDGE_CAP_MM))
