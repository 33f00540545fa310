"""Z-score schemes of imported models, computed as their own frameworks compute them.

- ``nnunet-zscore-masked``: nnU-Net v2's ``ZScoreNormalization`` with ``use_mask_for_norm``:
  the mask is the non-zero region of all channels with holes filled (``create_nonzero_mask``);
  mean and SD of the mask's voxels (float32, as nnU-Net), the mask's voxels z-scored, every
  voxel outside it 0.
- ``nnunet-zscore``: the same without the mask: mean and SD of the whole image cropped to the
  non-zero bounding box (nnU-Net crops before it normalises).
- ``zscore-nonzero``: MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``: statistics of
  each channel's non-zero voxels; voxels that are zero in every channel stay 0 (MONAI keeps each
  channel's own zeros: the same for one channel or channels sharing a background).

nnU-Net normalises on the image's own grid and resamples afterwards, so the statistics are
taken on the native images here (:func:`native_statistics`) and applied on the model grid; as
z-scoring is affine and resampling linear, this equals nnU-Net's order up to the interpolator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .options import Normalisation

SCHEMES = (Normalisation.NNUNET_ZSCORE, Normalisation.NNUNET_ZSCORE_MASKED, Normalisation.ZSCORE_NONZERO)


@dataclass(frozen=True)
class NativeStatistics:
    """Per-channel (mean, SD) and the mask (on the native grid, uint8) outside which voxels are 0."""

    scheme: Normalisation
    mean_sd: list[tuple[float, float]]
    mask: sitk.Image | None

    def apply(self, channel: int, array: np.ndarray, mask_on_grid: np.ndarray | None) -> np.ndarray:
        """Z-score ``array`` (any shape) of ``channel``; zero outside ``mask_on_grid`` if masked."""
        mean, sd = self.mean_sd[channel]
        out = ((array.astype(np.float32) - np.float32(mean)) / np.float32(sd)).astype(np.float32)
        if mask_on_grid is not None:
            out[~mask_on_grid] = 0.0
        return out


def _nonzero_filled(arrays: list[np.ndarray]) -> np.ndarray:
    mask = arrays[0] != 0
    for a in arrays[1:]:
        mask |= a != 0
    return ndimage.binary_fill_holes(mask)


def native_statistics(images: list[sitk.Image], scheme: Normalisation) -> NativeStatistics:
    """Statistics of ``scheme`` on ``images`` (all on the first one's grid)."""
    arrays = [sitk.GetArrayViewFromImage(im).astype(np.float32) for im in images]
    eps = 1e-8  # nnU-Net's floor on the SD
    stats = []
    mask_image = None
    if scheme in (Normalisation.NNUNET_ZSCORE, Normalisation.NNUNET_ZSCORE_MASKED):
        nonzero = _nonzero_filled(arrays)
        if not nonzero.any():
            raise InputError("the image is all zero; nothing to normalise.")
        if scheme == Normalisation.NNUNET_ZSCORE_MASKED:
            selected = [a[nonzero] for a in arrays]
            mask_image = sitk.GetImageFromArray(nonzero.astype(np.uint8))
            mask_image.CopyInformation(images[0])
        else:
            idx = np.nonzero(nonzero)
            box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
            selected = [a[box] for a in arrays]
        for v in selected:
            stats.append((float(v.mean()), max(float(v.std()), eps)))
    elif scheme == Normalisation.ZSCORE_NONZERO:
        for a in arrays:
            v = a[a != 0]
            if v.size == 0 or float(v.std()) <= 0:
                raise InputError("an image is all zero or constant where non-zero; nothing to normalise.")
            stats.append((float(v.mean()), float(v.std())))
        mask = np.zeros(arrays[0].shape, bool)
        for a in arrays:
            mask |= a != 0
        mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
        mask_image.CopyInformation(images[0])
    else:
        raise ValueError(f"normalisation scheme {scheme!r}")
    return NativeStatistics(scheme, stats, mask_image)
