"""Probability map -> lesion instances: detect with one threshold, outline with another.

The one rule by which every front end (``segment``, the Slicer module, the web viewer,
``compare``, DICOM export, training validation, ``evaluate``) turns a metastasis
probability map into numbered lesions:

1. **detect**: 26-connected components of ``p > threshold``; those smaller than
   ``min_volume_mm3`` (counted at the detection threshold) are dropped. These decide
   *which* lesions exist.
2. **outline**: each kept detection extends over the 26-connected region of
   ``p > outline_threshold`` that holds it (hysteresis). This decides *how far* a lesion
   reaches, and so its volume and diameters. A high detection threshold keeps false
   positives out; the lower outline threshold draws lesions at their true size.
3. **keep apart**: when one outline region holds several detections (adjacent metastases
   whose rims touch), the region is split between them by a watershed on the probability,
   seeded by the detections, so each stays its own lesion.

Regions of ``p > outline_threshold`` that hold no detection are not lesions. Without an
outline threshold (``None``, a model card without the field) the outline is the detection
itself: the single-threshold rule of earlier versions, bit for bit.

The :class:`OperatingPoint` half imports nothing beyond the standard library (and :mod:`.options`,
which imports nothing else either), so the Slicer module can read a card's or a run's operating
point before the library's packages are installed; the labelling half imports its image
libraries when first called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .options import PROBABILITY_OPEN_RANGE

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK as sitk

# What the GUIs' threshold sliders offer (Slicer module, web viewer): probabilities strictly
# inside (0, 1), in steps of SLIDER_STEP.
SLIDER_RANGE = (0.01, 0.99)
SLIDER_STEP = 0.01


@dataclass(frozen=True)
class OperatingPoint:
    """The operating values of a model (its card) or of a user's run.

    threshold: detection threshold, a probability in (0, 1): components of ``p > threshold``
        are the candidate lesions.
    min_volume_mm3: detected components smaller than this (mm^3, at the detection threshold)
        are dropped.
    outline_threshold: probability in (0, threshold]: each detection is drawn as the connected
        region of ``p > outline_threshold`` that holds it; ``None`` draws it at ``threshold``.
    """

    threshold: float
    min_volume_mm3: float = 0.0
    outline_threshold: float | None = None

    def __post_init__(self):
        low, high = PROBABILITY_OPEN_RANGE
        if not low < self.threshold < high:
            raise ValueError(f"detection threshold must be in ({low:g}, {high:g}), not {self.threshold}")
        if not self.min_volume_mm3 >= 0.0:
            raise ValueError(f"minimum lesion volume must be >= 0 mm^3, not {self.min_volume_mm3}")
        if self.outline_threshold is not None and not low < self.outline_threshold <= self.threshold:
            raise ValueError(f"outline threshold must be in ({low:g}, detection threshold {self.threshold:g}], "
                             f"not {self.outline_threshold}")

    @property
    def outline(self) -> float:
        """The threshold lesions are drawn at (the detection threshold when none is set)."""
        return self.threshold if self.outline_threshold is None else self.outline_threshold

    def as_settings(self) -> dict:
        """The values as run.json's ``settings`` records them (``*_used``)."""
        return {"threshold_used": self.threshold, "min_volume_mm3_used": self.min_volume_mm3,
                "outline_threshold_used": self.outline}

    @classmethod
    def from_settings(cls, settings: dict, source: str = "run.json") -> OperatingPoint:
        """The operating point a run recorded (a run made before outlines existed has none:
        its lesions were drawn at the detection threshold); ``ValueError`` naming ``source``."""
        try:
            threshold = float(settings["threshold_used"])
            min_volume = float(settings.get("min_volume_mm3_used") or 0.0)
            outline = settings.get("outline_threshold_used")
            return cls(threshold, min_volume, None if outline is None else float(outline))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: settings hold no valid operating point ({exc}).") from None

    def same_labels(self, other: OperatingPoint | None) -> bool:
        """True when ``other`` makes the same lesions (an unset outline is the detection
        threshold)."""
        return other is not None and self.as_settings() == other.as_settings()

    def describe(self) -> str:
        """E.g. ``probability > 0.95, lesions >= 10 mm^3, outlined at > 0.4``."""
        text = f"probability > {self.threshold:g}"
        text += f", lesions >= {self.min_volume_mm3:g} mm^3" if self.min_volume_mm3 else ""
        return text + (f", outlined at > {self.outline:g}" if self.outline < self.threshold else "")


def follow(threshold: float, outline: float, moved: str) -> tuple[float, float]:
    """(detection threshold, outline threshold) after a GUI control moved one of them
    (``moved`` = "detection" or "outline"): the other follows so that outline <= detection.
    A detection threshold moved below the outline takes the outline down with it; an outline
    moved above the detection threshold takes that up."""
    threshold, outline = float(threshold), float(outline)
    if moved == "detection":
        return threshold, min(outline, threshold)
    if moved == "outline":
        return max(threshold, outline), outline
    raise ValueError(f"moved must be 'detection' or 'outline', not {moved!r}")


def lesion_labels_array(probability_kji: np.ndarray, spacing_xyz, point: OperatingPoint) -> np.ndarray:
    """Instance labels (int32, ids 1..N by decreasing outlined size) of a (Z, Y, X) probability
    array with voxel size ``spacing_xyz`` (x, y, z mm), by the rule in the module docstring."""
    import numpy as np

    from .lesions import label_instances, renumber_by_size

    prob = np.asarray(probability_kji)
    seeds = label_instances(prob > point.threshold, spacing_xyz, point.min_volume_mm3)
    if point.outline >= point.threshold or not seeds.any():
        return seeds
    return renumber_by_size(_grow(prob, seeds, point.outline))


def grow_detections(prob: np.ndarray, seeds: np.ndarray, outline) -> np.ndarray:
    """Detections (instance ids, (Z, Y, X)) drawn out to ``outline`` by step 2-3 of the module
    rule, renumbered by size. ``outline``: a probability, or one per voxel (an array of
    ``prob``'s shape, e.g. lower where a prior says a lesion was); no seed may lie at or below it."""
    from .lesions import renumber_by_size

    return renumber_by_size(_grow(prob, seeds, outline)) if seeds.any() else seeds


def _grow(prob: np.ndarray, seeds: np.ndarray, outline) -> np.ndarray:
    """Each seed grown over its connected ``prob > outline`` region; regions holding several
    seeds split by a seeded watershed on ``-prob`` inside the region's bounding box."""
    import cc3d
    import numpy as np
    from scipy import ndimage
    from skimage.segmentation import watershed

    from .lesions import relabel_at

    regions = cc3d.connected_components(prob > outline, connectivity=26)
    at_seeds = np.flatnonzero(seeds)  # lesions are a small part of a scan: index their voxels only
    owners = np.unique(np.stack([regions.ravel()[at_seeds], seeds.ravel()[at_seeds]]), axis=1)  # (region, seed)
    region_ids, seeds_per_region = np.unique(owners[0], return_counts=True)
    lut = np.zeros(int(regions.max()) + 1, np.int32)
    single = region_ids[seeds_per_region == 1]
    lut[single] = owners[1][np.isin(owners[0], single)]
    out = relabel_at(regions, lut, np.flatnonzero(regions))
    boxes = ndimage.find_objects(regions)
    for region in region_ids[seeds_per_region > 1]:
        box = boxes[region - 1]
        inside = regions[box] == region
        split = watershed(-prob[box], np.where(inside, seeds[box], 0), mask=inside, connectivity=3)
        out[box][inside] = split[inside]
    return out


def lesion_labels(probability: sitk.Image, point: OperatingPoint) -> sitk.Image:
    """Instance label map (uint16, the probability's geometry) of a probability image."""
    import numpy as np
    import SimpleITK as sitk

    labels = lesion_labels_array(sitk.GetArrayViewFromImage(probability), probability.GetSpacing(), point)
    out = sitk.GetImageFromArray(labels.astype(np.uint16))
    out.CopyInformation(probability)
    return out
