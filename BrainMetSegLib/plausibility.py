"""Doubts about an input that do not stop a run but must be said: the image cannot be a head
scan, the brain mask is implausibly small, the image looks like noise.

Each check returns sentences; the pipeline puts them in ``Result.warnings`` and ``run.json``
and the CLI prints them. Limits are deliberately loose (they flag garbage, not unusual anatomy).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

# An adult brain is ~140 x 170 x 120 mm (L-R, A-P, S-I) and 1.0-1.6 litres.
MIN_FIELD_OF_VIEW_MM = 60.0
MIN_VOXELS_PER_AXIS = 16
MIN_BRAIN_ML = 300.0
#: An adult's intracranial volume is at most ~1,900 mL; a brain mask well above it holds scalp,
#: orbits or skull base (deepbet on the sample tilted 25/15 degrees before issue 24: 2,511 mL
#: against 2,008 mL upright, the synthetic head being 1.0-1.3x Colin27's size).
MAX_BRAIN_ML = 2200.0
#: Brain (mL) within 2 mm of the edge of the scan's field of view above which the brain is cut.
FOV_EDGE_ML = 1.0
#: Voxels of the model grid above which a scan is refused: a whole head at 0.833 mm is ~40 M, a
#: head-and-neck field of view (~300 x 300 x 400 mm) ~100 M; beyond, the resampled arrays alone
#: outgrow a workstation's memory (a 5 mm header on a 1 mm scan: 1,700 M voxels, killed at 22 GB).
MAX_MODEL_GRID_VOXELS = 150_000_000
#: An MR image with at most this many distinct intensities is a mask or a label map (a uint8
#: MR export still uses ~100-256 levels in the head).
MAX_LABEL_MAP_VALUES = 32
#: Share of a given brain mask lying outside the head (the image's foreground) above which the
#: mask is doubted: a phantom's own mask 0.013, the same mask moved 10 mm sideways 0.061, 25 mm 0.130.
MAX_MASK_OUTSIDE_HEAD = 0.05
# Neighbouring voxels of any MR image are strongly correlated (point-spread, anatomy);
# white noise is not.
MIN_NEIGHBOUR_CORRELATION = 0.2


def field_of_view_notes(image: sitk.Image) -> list[str]:
    """Warn when the image is too small along an axis to hold a brain."""
    size, spacing = image.GetSize()[:3], image.GetSpacing()[:3]
    extent = [n * s for n, s in zip(size, spacing, strict=True)]
    notes = []
    if min(size) < MIN_VOXELS_PER_AXIS:
        notes.append(f"the image has only {min(size)} voxels along one axis (size {tuple(size)}): "
                     "too few for a brain scan; results are unreliable.")
    if min(extent) < MIN_FIELD_OF_VIEW_MM:
        dims = " x ".join(f"{e:.0f}" for e in extent)
        notes.append(f"the field of view ({dims} mm) cannot hold a whole brain (~140 x 170 x 120 mm); "
                     "lesions outside it are not found and the brain mask and intensity "
                     "normalisation may be off.")
    return notes


def model_grid_problem(image: sitk.Image, grid_size_xyz, grid_spacing_xyz) -> str | None:
    """Why ``image`` cannot be resampled onto a model grid of ``grid_size_xyz`` voxels of
    ``grid_spacing_xyz`` mm covering it (more than :data:`MAX_MODEL_GRID_VOXELS`), or None."""
    voxels = int(np.prod(np.asarray(grid_size_xyz, dtype=np.int64)))
    if voxels <= MAX_MODEL_GRID_VOXELS:
        return None
    size, spacing = image.GetSize()[:3], image.GetSpacing()[:3]
    extent = " x ".join(f"{n * s:.0f}" for n, s in zip(size, spacing, strict=True))
    return (f"the image covers {extent} mm ({' x '.join(map(str, size))} voxels of "
            f"{' x '.join(f'{s:g}' for s in spacing)} mm), a head about 180 x 220 x 230 mm: on the model's "
            f"{' x '.join(f'{s:g}' for s in grid_spacing_xyz)} mm grid that is {voxels / 1e6:,.0f} M voxels, "
            f"more than the {MAX_MODEL_GRID_VOXELS / 1e6:.0f} M this tool resamples. Check the header's voxel "
            "spacing, or crop the image to the head.")


def _few_values(image: sitk.Image) -> np.ndarray | None:
    """The distinct intensities of ``image`` when there are at most :data:`MAX_LABEL_MAP_VALUES`
    of them, else None (a strided look first: an MR scan has thousands)."""
    array = sitk.GetArrayViewFromImage(image)
    if np.unique(array[::3, ::3, ::3]).size > MAX_LABEL_MAP_VALUES:
        return None
    values = np.unique(array)
    return None if values.size > MAX_LABEL_MAP_VALUES else values


def _shown(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")


def label_map_problem(image: sitk.Image) -> str | None:
    """Why ``image`` cannot be an MR scan, or None: every voxel an integer from 0 to
    :data:`MAX_LABEL_MAP_VALUES` (a 0/1 mask or a label map picked by mistake, e.g. a run's own
    ``lesion_labels.nii.gz``). Other images of few values are only warned about
    (:func:`few_values_note`)."""
    values = _few_values(image)
    if values is None or values.min() < 0 or values.max() > MAX_LABEL_MAP_VALUES or np.any(values != np.round(values)):
        return None
    return (f"the image holds only {values.size} distinct values ({_shown(values)}): a mask or label map, not an "
            "MR scan. Pass the contrast-enhanced T1 image itself.")


def few_values_note(image: sitk.Image) -> str | None:
    """Warn when ``image`` holds at most :data:`MAX_LABEL_MAP_VALUES` distinct intensities (a
    0/255 mask, a noise-free drawing): not an MR scan, whatever the network makes of it."""
    values = _few_values(image)
    if values is None:
        return None
    return (f"the image holds only {values.size} distinct intensities ({_shown(values)}): a mask or a drawing, "
            "not an MR scan; the lesions found mean nothing on it.")


def outside_head_fraction(image_zyx: np.ndarray, mask_zyx: np.ndarray, step: int = 2) -> float:
    """Share of ``mask_zyx``'s voxels outside the head: the largest connected region above the
    image's Otsu threshold, closed and hole-filled (so CSF and ventricles count as head), on
    every ``step``-th voxel (same (Z, Y, X) grid for both arrays)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    sub = (slice(None, None, step),) * 3
    image, mask = np.asarray(image_zyx[sub], np.float32), np.asarray(mask_zyx[sub], bool)
    if not mask.any() or image.min() == image.max():
        return 0.0
    labels, n = ndimage.label(image > threshold_otsu(image))
    if n == 0:
        return 1.0
    head = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    head = ndimage.binary_fill_holes(ndimage.binary_closing(head, iterations=2))
    return float((mask & ~head).sum()) / float(mask.sum())


def mask_outside_head_note(fraction: float | None, method: str) -> str | None:
    """Warn when a brain mask given by the user lies partly outside the head (another scan's mask,
    or misaligned): lesions outside it are not found, look-alikes inside it may be."""
    if fraction is not None and fraction > MAX_MASK_OUTSIDE_HEAD:
        return (f"{fraction:.0%} of the brain mask ({method}) lies outside the head in the image: it may belong "
                "to another scan or be misaligned; lesions outside it are not found. Check the mask against the "
                "image, or use --brain-mask deepbet.")
    return None


def noise_note(image: sitk.Image, max_voxels: int = 2_000_000) -> str | None:
    """Warn when neighbouring voxels are uncorrelated along every axis (pure noise)."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((array.size / max_voxels) ** (1 / 3))))
    a = np.asarray(array[::step, ::step, ::step], dtype=np.float64)
    correlations = []
    for axis in range(3):
        if a.shape[axis] < 2:
            continue
        x = np.moveaxis(a, axis, 0)
        u, v = x[:-1].ravel(), x[1:].ravel()
        if u.std() == 0 or v.std() == 0:
            continue
        correlations.append(float(np.corrcoef(u, v)[0, 1]))
    if correlations and max(correlations) < MIN_NEIGHBOUR_CORRELATION:
        return (f"neighbouring voxels are almost uncorrelated (correlation {max(correlations):.2f}): the "
                "image looks like noise, not an MR scan; results are meaningless.")
    return None


def brain_volume_note(brain_ml: float, method: str) -> str | None:
    if brain_ml < MIN_BRAIN_ML:
        return (f"the brain mask ({method}) holds only {brain_ml:.0f} mL (an adult brain is about "
                "1,000-1,600 mL): brain extraction may have failed or the scan covers little brain; "
                "check the result or pass --brain-mask.")
    return None


def extracerebral_note(brain_ml: float, method: str) -> str | None:
    """Warn when the brain mask is larger than any adult brain (extracerebral tissue let in)."""
    if brain_ml > MAX_BRAIN_ML:
        return (f"the brain mask ({method}) holds {brain_ml:.0f} mL, more than an adult's intracranial "
                f"volume (up to ~1,900 mL): it probably includes scalp, orbits or skull base, where false "
                "lesions appear; check the mask or pass --brain-mask.")
    return None


def field_of_view_edge_note(edge_ml: float) -> str | None:
    """Warn when the brain mask runs into the edge of the scan's field of view."""
    if edge_ml > FOV_EDGE_ML:
        return (f"the brain reaches the edge of the scan's field of view ({edge_ml:.0f} mL of brain within "
                "2 mm of it): part of the brain is probably outside the scan, and lesions there are not found.")
    return None


def image_notes(image: sitk.Image) -> list[str]:
    notes = field_of_view_notes(image)
    return notes + [n for n in (noise_note(image), few_values_note(image)) if n]
