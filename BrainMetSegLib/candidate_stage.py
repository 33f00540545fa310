"""The candidate stage: low-threshold candidates, each given a calibrated lesion probability.

Runs after the network when the model card names a candidate scorer (:mod:`.scorer`):

1. candidates: :func:`~BrainMetSegLib.operating_point.lesion_labels_array` at the scorer's
   candidate threshold with no minimum volume, outlined at the card's outline threshold
   (capped at the candidate threshold);
2. each candidate's features (:mod:`.candidates`) -> the scorer's calibrated probability;
3. the mode decides: probability >= its ``cut`` (a large candidate: its ``large_cut``, by the
   scorer's ``large_rule``, :mod:`.scorer`; with ``axial_measurable`` each candidate's core is
   measured on the axial plane, :func:`candidate_measurable`) -> a **lesion** (label
   map, lesion table, ids 1..N by decreasing size); in [``review_from``, ``cut``) ->
   **possible**, listed for review in a separate table (ids 1..M, by decreasing lesion
   probability), never in the label map; below -> dropped;
4. a lesion with more than :data:`OUTSIDE_BRAIN_MAX_FRACTION` of its volume outside the brain
   mask *before* its dilation (deepbet's own mask; the gate is that mask dilated 4 mm so that
   lesions it carved out at the brain's surface are kept) is listed as possible instead, with
   that reason: a lesion deepbet clipped keeps part of itself inside the mask; one lying wholly
   in the dilation's band is outside the brain (skull base, dura).

Each possible row says why it is not a lesion (``reason``). The card's detection threshold and
minimum volume are not used when a scorer is: the scorer's cut replaces them (run.json records
the mode, its cut, the candidate threshold and the outside-the-brain fraction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .candidates import ZScoredWithin, candidate_features
from .lesions import Frame, LesionTableRow, lesion_table, relabel_at, renumber_by_size
from .operating_point import OperatingPoint, lesion_labels_array
from .options import ScorerMode
from .scorer import Scorer


@dataclass
class Candidates:
    """labels: (Z, Y, X) int32 candidate ids 1..N; features: (N, F); probability: (N,) the
    calibrated lesion probability (NaN until scored)."""

    labels: np.ndarray
    features: np.ndarray
    probability: np.ndarray


def candidate_labels(probability: sitk.Image, candidate_threshold: float,
                     outline_threshold: float | None) -> np.ndarray:
    """(Z, Y, X) int32 candidate ids 1..N of a probability map: components of
    p > ``candidate_threshold`` with no minimum volume, outlined at ``outline_threshold``
    (capped at the candidate threshold). The one rule for candidates: the stage's lesions and
    possible lesions are subsets of these, voxel for voxel (``compare`` recomputes them from a
    result folder's probability map, :mod:`.longitudinal.below_cut`)."""
    prob = sitk.GetArrayViewFromImage(probability)
    point = OperatingPoint(candidate_threshold, 0.0, outline_level(candidate_threshold, outline_threshold))
    return lesion_labels_array(prob, probability.GetSpacing(), point)


def outline_level(candidate_threshold: float, outline_threshold: float | None) -> float:
    """The probability candidates are drawn at (each is a region of p > this): the outline
    threshold capped at the candidate threshold, or the candidate threshold without one."""
    return candidate_threshold if outline_threshold is None else min(outline_threshold, candidate_threshold)


def find_candidates(probability: sitk.Image, ce_t1: sitk.Image, brain: sitk.Image,
                    candidate_threshold: float, outline_threshold: float | None) -> Candidates:
    """Candidates of a probability map and their features (all images on one grid)."""
    prob = sitk.GetArrayViewFromImage(probability)
    labels = candidate_labels(probability, candidate_threshold, outline_threshold)
    brain_kji = sitk.GetArrayViewFromImage(brain) > 0
    image = sitk.GetArrayViewFromImage(ce_t1)
    features = candidate_features(labels, prob, ZScoredWithin(image, brain_kji, np.float32), brain_kji,
                                  Frame.of(probability), candidate_threshold)
    return Candidates(labels, features, np.full(len(features), np.nan))


def candidate_measurable(labels: np.ndarray, probability: sitk.Image, core_threshold: float) -> np.ndarray:
    """(N,) bool: whether the core of each candidate 1..N of ``labels`` ((Z, Y, X), on
    ``probability``'s grid: :func:`candidate_labels`) is RANO-BM measurable on the axial plane.

    The core is the candidate's voxels of probability > ``core_threshold`` (the candidate
    threshold), the region its features describe (:mod:`.candidates`: its ``log_diameter_mm`` is
    this core's longest 3D diameter), measured as :func:`~BrainMetSegLib.lesions.lesion_table`
    measures a label map (half-voxel boundary, its ``rano_bm_measurable``). Like the features it
    does not change with the outline threshold. A candidate without core voxels is not measurable."""
    core = np.where(sitk.GetArrayViewFromImage(probability) > core_threshold, labels, 0)
    out = np.zeros(int(labels.max(initial=0)), bool)
    for row in lesion_table(_image(core, probability)):
        out[row["lesion_id"] - 1] = row["rano_bm_measurable"]
    return out


#: A candidate with more than this fraction of its voxels outside the undilated brain mask is
#: never a lesion, only possible: it lies (almost) wholly in the band the gate's dilation added.
#: The true lesions the demo finds on the robustness phantoms (1-7 mm slices, tilted, cropped)
#: lie inside deepbet's mask (fraction <= 0.01, docs/robustness.md "False lesions outside the
#: brain"), so they bound nothing; deepbet has been seen to carve 93 % of a ring-enhancing surface
#: lesion out (SPEC.md): the cut stays above that.
OUTSIDE_BRAIN_MAX_FRACTION = 0.95
REASON_BELOW_CUT = "lesion probability below the mode's cut"


def outside_fractions(labels: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(N,) fraction of the voxels of each candidate 1..N of ``labels`` (Z, Y, X) int that lie
    outside ``brain`` (Z, Y, X) bool (same grid); 0 for an id without voxels."""
    where = np.flatnonzero(labels)  # the candidates' voxels only
    ids = labels.ravel()[where]
    n = int(ids.max(initial=0))
    total = np.bincount(ids, minlength=n + 1)[1:]
    outside = np.bincount(ids[~brain.ravel()[where]], minlength=n + 1)[1:]
    return outside / np.maximum(total, 1)


def outside_reason(fraction: float) -> str:
    return f"{100 * fraction:.0f} % of its volume outside the brain mask"


def _subset(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label map of the kept candidate ids (bool per id 1..N) renumbered 1..M by decreasing
    size, and for each new id its old one."""
    lut = np.zeros(len(keep) + 1, np.int32)
    lut[1:][keep] = np.flatnonzero(keep) + 1
    where = np.flatnonzero(labels)  # candidates are a small part of a scan: their voxels only
    kept = relabel_at(labels, lut, where)
    sub = renumber_by_size(kept)
    old = np.zeros(int(sub.max(initial=0)) + 1, np.int64)
    old[sub.ravel()[where]] = kept.ravel()[where]
    return sub, old[1:]


def _image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.uint16))
    out.CopyInformation(like)
    return out


class ReviewRow(LesionTableRow):
    """A possible lesion listed for review (``possible_lesions.csv``): a lesion row with
    ``status`` "possible", ids of their own (1 = most probable) and why it is not a lesion
    (``reason``: below the mode's cut, or mostly outside the brain)."""

    status: str
    reason: str


def kept_below_cut_notes(table: list[dict], cut: float, large_from_mm: float | None) -> list[str]:
    """A sentence per lesion of ``table`` kept under the mode's ``cut`` by the large-candidate rule
    (lesion probability < ``cut``): the scorer doubted it and only its size kept it, so it is a
    patchy network response (a lesion drawn in part: a 25 mm phantom lesion at 0.12 was outlined
    at 48 % of its volume) or a false lesion; either way the reader should look at it."""
    size = f" (>= {large_from_mm:g} mm)" if large_from_mm else ""
    return [f"lesion {int(r['lesion_id'])} ({float(r['axial_longest_diameter_mm']):.0f} mm) was kept at lesion "
            f"probability {float(r['lesion_probability']):.2f}, under the cut {cut:g}, for its size{size}: its "
            "outline and volume may be incomplete, or it may not be a lesion; check it."
            for r in table if float(r["lesion_probability"]) < cut]


def apply_scorer(probability: sitk.Image, ce_t1: sitk.Image, brain: sitk.Image, scorer: Scorer,
                 mode: ScorerMode, outline_threshold: float | None, brain_undilated: sitk.Image | None = None,
                 outside_max: float = OUTSIDE_BRAIN_MAX_FRACTION
                 ) -> tuple[sitk.Image, list[LesionTableRow], list[ReviewRow], int]:
    """(label image, lesion table, possible table, candidate count) of one case.

    brain: the dilated mask that gated the probability (features); brain_undilated: the mask
    before dilation (None: no outside-the-brain rule), a lesion with more than ``outside_max``
    of its voxels outside it becomes possible. Each table row carries ``lesion_probability``;
    possible rows have ``status`` "possible", a ``reason`` and ids of their own (1 = most
    probable). Images share ``probability``'s geometry."""
    cand = find_candidates(probability, ce_t1, brain, scorer.candidate_threshold, outline_threshold)
    cand.probability = scorer.probability(cand.features)
    measurable = (candidate_measurable(cand.labels, probability, scorer.candidate_threshold)
                  if scorer.needs_measurable else None)
    confirmed, possible = scorer.decide(mode, cand.probability, cand.features, measurable)
    reasons = np.full(len(confirmed), REASON_BELOW_CUT, object)
    if brain_undilated is not None and confirmed.any():
        fraction = outside_fractions(cand.labels, sitk.GetArrayViewFromImage(brain_undilated) > 0)
        outside = confirmed & (fraction > outside_max)
        reasons[outside] = [outside_reason(f) for f in fraction[outside]]
        confirmed, possible = confirmed & ~outside, possible | outside
    lab, old = _subset(cand.labels, confirmed)
    labels = _image(lab, probability)
    level = outline_level(scorer.candidate_threshold, outline_threshold)
    table = lesion_table(labels, probability, level)
    for row in table:
        row["lesion_probability"] = float(cand.probability[old[row["lesion_id"] - 1] - 1])
    review: list[ReviewRow] = []
    if possible.any():
        plab, pold = _subset(cand.labels, possible)
        rows = lesion_table(_image(plab, probability), probability, level)
        for row in rows:
            row["lesion_probability"] = float(cand.probability[pold[row["lesion_id"] - 1] - 1])
            row["reason"] = str(reasons[pold[row["lesion_id"] - 1] - 1])
        review = sorted(({**row, "status": "possible"} for row in rows), key=lambda r: -r["lesion_probability"])
        for n, row in enumerate(review, 1):
            row["lesion_id"] = n
    return labels, table, review, len(cand.probability)
