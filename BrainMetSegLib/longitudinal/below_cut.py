"""Candidates a scan's candidate stage did not call lesions, recovered for ``compare``.

With a model whose candidate stage chose the lesions (run.json ``settings.candidate_stage``),
every component of probability > the scorer's candidate threshold was scored: the lesions are
those at or above the mode's cut, the *possible* lesions (``possible_lesions.csv``,
``lesions.json`` ``possible_lesions``) those from ``review_from`` up to the cut, the rest were
dropped. A result folder keeps the probability map, so the candidates are recomputed here by
the stage's own rule (:func:`BrainMetSegLib.candidate_stage.candidate_labels`, the same voxels);
the possible lesions' lesion probabilities are read from the record, matched to their
candidate by voxel count and centroid. Candidates under ``review_from`` keep NaN (never
recorded).

Comparison uses them two ways (docs/longitudinal.md): a follow-up lesion at the place of a
baseline candidate was there at baseline, below the cut, so it is not a *new* lesion
(:mod:`.tracking`); and with ``--prior`` a possible lesion where another scan has a lesion is
made a lesion, on every scan alike (:func:`.prior.promote_candidates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..candidate_stage import candidate_labels
from .matching import near_extent


@dataclass
class BelowCut:
    """Candidates of one scan that are not lesions: ``labels`` (Z, Y, X) int32 ids 1..M on the
    scan's grid, ``probability`` (M,) their lesion probabilities (NaN: below the review floor,
    not recorded); ``review_from`` and ``sensitive_cut`` of the run (run.json); ``row`` (M,) the
    index of each candidate's row in the run's possible-lesion list (-1: not listed)."""

    labels: np.ndarray
    probability: np.ndarray
    review_from: float
    sensitive_cut: float
    row: np.ndarray | None = None

    def __post_init__(self):
        if self.row is None:
            self.row = np.full(len(self.probability), -1, int)

    def image(self, like: sitk.Image) -> sitk.Image:
        out = sitk.GetImageFromArray(self.labels.astype(np.uint32))
        out.CopyInformation(like)
        return out

    def without(self, ids: list[int]) -> BelowCut:
        """The same candidates less ``ids`` (e.g. made lesions by the prior), renumbered 1..M'."""
        keep = np.ones(len(self.probability), bool)
        keep[np.asarray(ids, int) - 1] = False
        lut = np.zeros(len(keep) + 1, np.int32)
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
        return BelowCut(lut[self.labels], self.probability[keep], self.review_from, self.sensitive_cut,
                        self.row[keep])


def _centroids(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel counts (n + 1,) and centroids (n + 1, 3) in (k, j, i) of ids 0..n."""
    fg = np.nonzero(labels)
    ids = labels[fg]
    counts = np.bincount(ids, minlength=n + 1)
    cents = np.stack([np.bincount(ids, weights=c, minlength=n + 1) for c in fg], 1) / np.maximum(counts, 1)[:, None]
    return counts, cents


def below_cut(probability: sitk.Image, lesions: sitk.Image, possible: list[dict], stage: dict,
              outline_threshold: float | None) -> BelowCut:
    """The candidates of a candidate-stage run that are not in its label map ``lesions``.

    probability: the run's probability map (same grid as ``lesions``); possible: its possible
    lesion rows (``lesion_probability``, ``voxels``, ``centroid_i/j/k``); stage: run.json
    ``settings.candidate_stage``; outline_threshold: run.json ``outline_threshold_used``.
    The sensitive cut is the mode's ``large_cut`` (the cut the measurable-lesion rule lowers to:
    the sensitive mode's cut), never below ``review_from`` (nothing lower is recorded); a scorer
    without the rule records none: ``review_from`` (every possible lesion).
    """
    cand = candidate_labels(probability, float(stage["candidate_threshold"]), outline_threshold)
    lesion = sitk.GetArrayViewFromImage(lesions) > 0
    n = int(cand.max(initial=0))
    is_lesion = np.zeros(n + 1, bool)
    is_lesion[np.unique(cand[lesion & (cand > 0)])] = True
    lut = np.zeros(n + 1, np.int32)
    rest = np.flatnonzero(~is_lesion[1:]) + 1
    lut[rest] = np.arange(1, len(rest) + 1)
    labels = lut[cand]
    counts, cents = _centroids(labels, len(rest))
    prob, rows = np.full(len(rest), np.nan), np.full(len(rest), -1, int)
    for index, row in enumerate(possible):
        same = np.flatnonzero(counts[1:] == int(row["voxels"])) + 1
        if not len(same):
            continue
        at = np.array([row["centroid_k"], row["centroid_j"], row["centroid_i"]], float)
        dist = np.linalg.norm(cents[same] - at, axis=1)
        if dist.min() <= 1.0:  # the record rounds centroids to whole voxels
            prob[same[int(np.argmin(dist))] - 1] = float(row["lesion_probability"])
            rows[same[int(np.argmin(dist))] - 1] = index
    review_from = float(stage["review_from"])
    large_cut = stage.get("large_cut")
    sensitive = review_from if large_cut is None else max(review_from, float(large_cut))
    return BelowCut(labels, prob, review_from, sensitive, rows)


def candidates_on_baseline(cands: BelowCut | None, labels: sitk.Image, base: sitk.Image,
                           registration) -> np.ndarray | None:
    """A time point's candidates resampled onto the baseline grid (nearest neighbour; ids
    kept), through its follow-up -> baseline ``registration`` (None for the baseline)."""
    if cands is None:
        return None
    image = cands.image(labels)
    if registration is not None:
        image = registration.labels_on_baseline(image, base)
    return sitk.GetArrayFromImage(image)


def sightings(extents: dict[int, np.ndarray], base: sitk.Image, on_base: list[np.ndarray | None],
              cands: list[BelowCut | None], contact_mm: float) -> dict[int, dict[int, float]]:
    """Where tracks were seen below the cut: track id -> {time point: lesion probability of the
    most probable candidate within ``contact_mm`` of the track's extent (NaN: below the review
    floor)}.

    extents: per track its voxels (flat indices on the baseline grid: every voxel it covered on
    any scan); on_base: per time point its candidates on the baseline grid
    (:func:`candidates_on_baseline`; None without a candidate stage)."""
    shape = sitk.GetArrayViewFromImage(base).shape
    out: dict[int, dict[int, float]] = {}
    for tid, voxels in extents.items():
        if not len(voxels):
            continue
        box, near = near_extent(voxels, shape, base.GetSpacing(), contact_mm)
        for t, arr in enumerate(on_base):
            if arr is None:
                continue
            ids = np.unique(arr[box][near])
            ids = ids[ids > 0]
            if len(ids):
                p = cands[t].probability[ids - 1]
                out.setdefault(tid, {})[t] = float(np.nanmax(p)) if np.isfinite(p).any() else float("nan")
    return out
