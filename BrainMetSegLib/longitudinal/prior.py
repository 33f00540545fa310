"""Prior-guided thresholding of a follow-up: the baseline's lesions, registered, as a hint.

The model is not retrained: its probability map of the follow-up is thresholded lower where
the baseline had a lesion (the lesion dilated by ``margin_mm``, carried onto the follow-up's
grid through the rigid registration) and at the model card's threshold everywhere else. A
known lesion that shrank and became faint is then kept, while new lesions elsewhere still need
the full threshold. (Treating a follow-up with the prior as a hint raised detection in
published work; here it is a thresholding rule, measured on phantoms in docs/longitudinal.md.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..lesions import label_instances
from .registration import Registration


@dataclass(frozen=True)
class PriorConfig:
    """threshold_factor: threshold inside the prior region = the model's threshold x this;
    margin_mm: dilation (mm) of the prior lesions before they are carried over."""

    threshold_factor: float = 0.5
    margin_mm: float = 3.0


def prior_region(prior_labels: sitk.Image, followup: sitk.Image, registration: Registration,
                 margin_mm: float) -> np.ndarray:
    """Bool array (z, y, x) on ``followup``'s grid: voxels within ``margin_mm`` of a prior lesion.

    ``registration`` maps baseline points to follow-up points (as :func:`register_followup`
    returns it); resampling the prior onto the follow-up needs the opposite direction.
    """
    prior = sitk.Cast(prior_labels > 0, sitk.sitkUInt8)
    if margin_mm > 0 and sitk.GetArrayViewFromImage(prior).any():
        dist = sitk.SignedMaurerDistanceMap(prior, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
        prior = sitk.Cast(dist <= margin_mm, sitk.sitkUInt8)
    moved = sitk.Resample(prior, followup, registration.transform.GetInverse(), sitk.sitkNearestNeighbor, 0,
                          sitk.sitkUInt8)
    return sitk.GetArrayFromImage(moved) > 0


def guided_labels(probability: sitk.Image, region: np.ndarray, threshold: float, min_volume_mm3: float,
                  config: PriorConfig = PriorConfig()) -> sitk.Image:
    """Instance labels (uint16, largest first) of ``probability`` thresholded at ``threshold``,
    and at ``threshold * threshold_factor`` inside ``region``."""
    prob = sitk.GetArrayViewFromImage(probability)
    thr = np.where(region, threshold * config.threshold_factor, threshold)
    labels = label_instances(prob > thr, probability.GetSpacing(), min_volume_mm3)
    out = sitk.GetImageFromArray(labels.astype(np.uint16))
    out.CopyInformation(probability)
    return out
