"""Prior-guided thresholding: every scan of a series re-thresholded with the *other* scans'
lesions, registered, as a hint.

The model is not retrained: its probability map of a scan is thresholded lower where another
scan of the series had a lesion (that lesion dilated by ``margin_mm``, carried onto this
scan's grid through the rigid registrations) and at the model's threshold everywhere else. A
known lesion that became faint is then kept, while lesions where no scan had one still need
the full threshold. The rule acts on **every** time point alike (the baseline too, with the
follow-ups' lesions as its prior): a prior used on follow-ups only would draw follow-up lesions
larger than baseline ones and bias the response towards progression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..lesions import label_instances
from ..operating_point import OperatingPoint, grow_detections
from .registration import Registration


@dataclass(frozen=True)
class PriorConfig:
    """threshold_factor: detection (and, where higher, outline) threshold inside the prior
    region = the model's detection threshold x this; margin_mm: dilation (mm) of the prior
    lesions before they are carried over."""

    threshold_factor: float = 0.5
    margin_mm: float = 3.0


def prior_region(prior_labels: sitk.Image, target: sitk.Image, registration: Registration,
                 margin_mm: float) -> np.ndarray:
    """Bool array (z, y, x) on ``target``'s grid: voxels within ``margin_mm`` of a prior lesion.

    ``registration`` maps points of the prior's scan to points of ``target`` (as
    :func:`register_followup` returns it for baseline -> follow-up); resampling the prior onto
    the target needs the opposite direction.
    """
    prior = sitk.Cast(prior_labels > 0, sitk.sitkUInt8)
    if margin_mm > 0 and sitk.GetArrayViewFromImage(prior).any():
        dist = sitk.SignedMaurerDistanceMap(prior, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
        prior = sitk.Cast(dist <= margin_mm, sitk.sitkUInt8)
    moved = sitk.Resample(prior, target, registration.transform.GetInverse(), sitk.sitkNearestNeighbor, 0,
                          sitk.sitkUInt8)
    return sitk.GetArrayFromImage(moved) > 0


def guided_labels(probability: sitk.Image, region: np.ndarray, point: OperatingPoint,
                  config: PriorConfig = PriorConfig()) -> sitk.Image:
    """Instance labels (uint16, largest first) of ``probability`` by ``point``'s rule
    (:mod:`BrainMetSegLib.operating_point`), the detection threshold lowered to
    ``threshold * threshold_factor`` inside ``region`` (and the outline threshold to at most that)."""
    prob = sitk.GetArrayViewFromImage(probability)
    low = point.threshold * config.threshold_factor
    detect = np.where(region, low, point.threshold)
    seeds = label_instances(prob > detect, probability.GetSpacing(), point.min_volume_mm3)
    labels = seeds
    if point.outline < point.threshold:  # else the detections are the lesions (single threshold)
        labels = grow_detections(prob, seeds, np.where(region, min(low, point.outline), point.outline))
    out = sitk.GetImageFromArray(labels.astype(np.uint16))
    out.CopyInformation(probability)
    return out


def between(registrations: list[Registration | None], source: int, target: int) -> Registration:
    """Registration taking points of time point ``source`` to time point ``target``, from the
    follow-up registrations (entry k: baseline -> follow-up k; entry 0 None)."""
    to_target = sitk.Transform(3, sitk.sitkIdentity) if target == 0 else registrations[target].transform
    from_source = sitk.Transform(3, sitk.sitkIdentity) if source == 0 else registrations[source].transform.GetInverse()
    return Registration(sitk.CompositeTransform([to_target, from_source]))  # to_target(from_source(x))


def symmetric_prior(probabilities: list[sitk.Image], labels: list[sitk.Image],
                    registrations: list[Registration | None], point: OperatingPoint,
                    config: PriorConfig = PriorConfig()) -> list[sitk.Image]:
    """Every time point's lesions re-made from its probability map with the other time points'
    lesions (``labels``, as segmented without a prior) as the prior; same order as given."""
    out = []
    for k, probability in enumerate(probabilities):
        region = np.zeros(sitk.GetArrayViewFromImage(probability).shape, bool)
        for j, other in enumerate(labels):
            if j != k:
                region |= prior_region(other, probability, between(registrations, j, k), config.margin_mm)
        out.append(guided_labels(probability, region, point, config))
    return out
