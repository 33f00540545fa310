"""Patch extraction and augmentation with MONAI dictionary transforms.

Arrays are channel-first (C, Z, Y, X) on an LPS grid, so the left-right axis is the
last spatial axis (X, ``spatial_axis=2``). The recipe (SPEC.md): left-right flip,
elastic deformation and gamma. Patches are cut first and deformed after, so the
expensive elastic resampling only touches patch-sized arrays.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def augment_transform(config: AugmentConfig):
    """Random left-right flip, elastic deformation (image bilinear, label nearest) and gamma."""
    from monai.transforms import Compose, Rand3DElasticd, RandAdjustContrastd, RandFlipd

    steps = []
    if config.flip_prob > 0:
        steps.append(RandFlipd(keys=("image", "label"), prob=config.flip_prob, spatial_axis=2))
    if config.elastic_prob > 0:
        steps.append(Rand3DElasticd(keys=("image", "label"), prob=config.elastic_prob,
                                    sigma_range=config.elastic_sigma,
                                    magnitude_range=config.elastic_magnitude,
                                    mode=("bilinear", "nearest"), padding_mode="zeros"))
    if config.gamma_prob > 0:
        steps.append(RandAdjustContrastd(keys="image", prob=config.gamma_prob, gamma=config.gamma,
                                         retain_stats=True))
    return Compose(steps)
