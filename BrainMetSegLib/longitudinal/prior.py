"""Prior-guided thresholding: every scan of a series re-thresholded with the *other* scans'
lesions, registered, as a hint.

The model is not retrained: its probability map of a scan is thresholded lower where another
scan of the series had a lesion (that lesion dilated by ``margin_mm``, carried onto this
scan's grid through the rigid registrations) and at the model's threshold everywhere else. A
known lesion that became faint is then kept, while lesions where no scan had one still need
the full threshold. The rule acts on **every** time point alike (the baseline too, with the
follow-ups' lesions as its prior): a prior used on follow-ups only would draw follow-up lesions
larger than baseline ones and bias the response towards progression.

Where the model's candidate stage chose the lesions (a lesion probability per candidate), a
fixed threshold rule would replace its decisions; there the prior acts on the decision instead
(:func:`promote_candidates`): a possible lesion where another scan has a lesion is a lesion.
The outline threshold is the same on every scan either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..lesions import label_instances
from ..operating_point import OperatingPoint, grow_detections
from .below_cut import BelowCut
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


def promote_candidates(labels: list[sitk.Image], cands: list[BelowCut], registrations: list[Registration | None],
                       margin_mm: float) -> tuple[list[sitk.Image], list[dict[int, int]]]:
    """The candidate-stage prior: on every time point alike, the candidates scored below the cut
    but at or above the sensitive cut (:attr:`.below_cut.BelowCut.sensitive_cut`) that lie
    within ``margin_mm`` of another time point's lesion (``labels``, as segmented, carried over
    by the registrations) are made lesions; everywhere else the run's own decision stands.

    Returns the new label maps (the run's lesions keep their ids; promoted candidates get the
    ids after them) and per time point the promoted lesions: new lesion id -> candidate id."""
    out, promoted = [], []
    for k, (own, cand) in enumerate(zip(labels, cands, strict=True)):
        region = np.zeros(sitk.GetArrayViewFromImage(own).shape, bool)
        for j, other in enumerate(labels):
            if j != k:
                region |= prior_region(other, own, between(registrations, j, k), margin_mm)
        touched = np.unique(cand.labels[region & (cand.labels > 0)])
        ids = [int(i) for i in touched if cand.probability[i - 1] >= cand.sensitive_cut]  # NaN: never
        arr = sitk.GetArrayFromImage(own).astype(np.uint32)
        next_id = int(arr.max(initial=0)) + 1
        for n, cid in enumerate(ids):
            arr[cand.labels == cid] = next_id + n
        promoted.append({next_id + n: cid for n, cid in enumerate(ids)})
        image = sitk.GetImageFromArray(arr.astype(np.uint16))
        image.CopyInformation(own)
        out.append(image)
    return out, promoted
