"""Patch extraction and augmentation with MONAI dictionary transforms.

Arrays are channel-first (C, Z, Y, X) on an LPS grid, so the left-right axis is the
last spatial axis (X, ``spatial_axis=2``). The recipe (SPEC.md): left-right flip,
elastic deformation and gamma. Patches are cut first and deformed after, so the
expensive elastic resampling only touches patch-sized arrays.

Optionally (``thick_prob`` > 0) the image is re-acquired as thick 2D slices
(:class:`RandThickSlicesd`): how a 3-7 mm spin-echo scan looks once the pipeline has
resampled it onto the model grid, while the label keeps the lesions' true extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.transforms import MapTransform, Randomizable


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (0 disables one).

    elastic_sigma / elastic_magnitude: MONAI ``Rand3DElasticd`` ranges (voxels).
    gamma: range of the gamma exponent of ``RandAdjustContrastd``.
    """

    flip_prob: float = 0.5
    elastic_prob: float = 0.2
    elastic_sigma: tuple[float, float] = (5.0, 8.0)
    elastic_magnitude: tuple[float, float] = (50.0, 150.0)
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    thick_prob: float = 0.0
    thick_mm: tuple[float, float] = (3.0, 7.5)
    thick_axis_weights: tuple[float, float, float] = (0.8, 0.1, 0.1)


def slab_profile(image: np.ndarray, axis: int, width: float, phase: float) -> np.ndarray:
    """``image`` as thick slices along ``axis``, back on its own grid (float32, same shape).

    width: slice thickness in voxels of this grid (> 1). phase: position of the first slice
    centre, voxels (0 <= phase < width). Each slice is the mean over its slab (rectangular
    profile, no gap: voxel i covers [i - 0.5, i + 0.5], partly covered voxels weigh their
    overlap), as :mod:`BrainMetSegLib.synth.reacquire` writes 2D slices; every voxel is then
    linearly interpolated between the two nearest slice centres (the pipeline's resampling),
    and beyond the first / last centre takes that slice's value.
    """
    data = np.moveaxis(np.asarray(image, np.float32), axis, 0)
    n = data.shape[0]
    # Integral of the piecewise-constant profile at the voxel edges -0.5, 0.5, ..., n - 0.5.
    edges = np.concatenate([np.zeros((1,) + data.shape[1:], np.float64), np.cumsum(data, axis=0, dtype=np.float64)])
    centres = np.arange(phase, n - 0.5 + 1e-9, width)
    if centres.size == 0:
        centres = np.array([min(phase, n - 1.0)])
    lo = np.clip(centres - width / 2, -0.5, n - 0.5)
    hi = np.clip(centres + width / 2, -0.5, n - 0.5)
    slabs = (_integral(edges, hi) - _integral(edges, lo)) / (hi - lo).reshape((-1,) + (1,) * (data.ndim - 1))
    k = np.clip(np.searchsorted(centres, np.arange(n), side="right") - 1, 0, centres.size - 1)
    k1 = np.minimum(k + 1, centres.size - 1)
    span = np.where(k1 > k, centres[k1] - centres[k], 1.0)
    a = np.clip((np.arange(n) - centres[k]) / span, 0.0, 1.0).reshape((-1,) + (1,) * (data.ndim - 1))
    out = (1 - a) * slabs[k] + a * slabs[k1]
    return np.ascontiguousarray(np.moveaxis(out.astype(np.float32), 0, axis))


def _integral(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The cumulative integral ``edges`` (at voxel edges) linearly interpolated at positions ``x``."""
    pos = x + 0.5
    i = np.clip(np.floor(pos).astype(int), 0, edges.shape[0] - 2)
    f = (pos - i).reshape((-1,) + (1,) * (edges.ndim - 1))
    return (1 - f) * edges[i] + f * edges[i + 1]


class RandThickSlicesd(Randomizable, MapTransform):
    """With probability ``prob``, re-acquire ``keys`` (channel-first (C, Z, Y, X)) as thick slices
    of a thickness drawn uniformly from ``thickness_mm`` along a spatial axis drawn with
    ``axis_weights`` (Z, Y, X: axial, coronal, sagittal on the LPS model grid), at a random slice
    phase. ``spacing_zyx``: the grid's spacing (mm). Labels are left alone: the truth is the
    lesions' extent, whatever the acquisition."""

    def __init__(self, keys, prob: float, thickness_mm: tuple[float, float], spacing_zyx,
                 axis_weights=(0.8, 0.1, 0.1)):
        MapTransform.__init__(self, keys)
        self.prob, self.thickness_mm = float(prob), tuple(float(t) for t in thickness_mm)
        self.spacing_zyx = tuple(float(s) for s in spacing_zyx)
        w = np.asarray(axis_weights, float)
        self.axis_weights = w / w.sum()
        self._draw = None

    def randomize(self, data=None) -> None:
        if self.R.random_sample() >= self.prob:
            self._draw = None
            return
        axis = int(self.R.choice(3, p=self.axis_weights))
        width = self.R.uniform(*self.thickness_mm) / self.spacing_zyx[axis]
        self._draw = (axis, width, self.R.uniform(0.0, width))

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        if self._draw is None or self._draw[1] <= 1.0:
            return d
        axis, width, phase = self._draw
        for key in self.key_iterator(d):
            image = np.asarray(d[key])
            d[key] = np.stack([slab_profile(c, axis, width, phase) for c in image])
        return d


def crop_transform(patch_zyx, positive: bool):
    """Crop one patch centred on a lesion voxel (``positive``) or on a non-lesion brain voxel,
    using the flat centre indices stored with the case (``fg`` / ``bg``; the case must be at
    least patch-sized, see :func:`sampling.pad_case`)."""
    from monai.transforms import Compose, RandCropByPosNegLabeld

    return Compose([
        RandCropByPosNegLabeld(keys=("image", "label"), label_key="label", spatial_size=patch_zyx,
                               pos=1.0 if positive else 0.0, neg=0.0 if positive else 1.0,
                               num_samples=1, fg_indices_key="fg", bg_indices_key="bg",
                               allow_smaller=True),
    ])


def augment_transform(config: AugmentConfig, spacing_zyx=(1.0, 1.0, 1.0)):
    """Random left-right flip, elastic deformation (image bilinear, label nearest), thick slices
    (image only; ``spacing_zyx`` in mm gives the slab width in voxels) and gamma."""
    from monai.transforms import Compose, Rand3DElasticd, RandAdjustContrastd, RandFlipd

    steps = []
    if config.flip_prob > 0:
        steps.append(RandFlipd(keys=("image", "label"), prob=config.flip_prob, spatial_axis=2))
    if config.elastic_prob > 0:
        steps.append(Rand3DElasticd(keys=("image", "label"), prob=config.elastic_prob,
                                    sigma_range=config.elastic_sigma,
                                    magnitude_range=config.elastic_magnitude,
                                    mode=("bilinear", "nearest"), padding_mode="zeros"))
    if config.thick_prob > 0:
        steps.append(RandThickSlicesd("image", config.thick_prob, config.thick_mm, spacing_zyx,
                                      config.thick_axis_weights))
    if config.gamma_prob > 0:
        steps.append(RandAdjustContrastd(keys="image", prob=config.gamma_prob, gamma=config.gamma,
                                         retain_stats=True))
    return Compose(steps)
