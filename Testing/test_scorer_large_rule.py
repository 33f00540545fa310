"""The candidate scorer's large rule (BrainMetSegLib.scorer ``large_rule``): which candidates are
kept from the mode's ``large_cut``: by their core's 3D diameter (files without the key), or only
those also RANO-BM measurable on the axial plane (``axial_measurable``)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from test_candidates import bright_scorer, images

from BrainMetSegLib.candidate_stage import apply_scorer, candidate_labels, candidate_measurable
from BrainMetSegLib.candidates import FEATURES
from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.scorer import ScorerError, scorer_from_dict
from BrainMetSegLib.train.stitch_scorers import StitchError, stitch

F = {name: n for n, name in enumerate(FEATURES)}


def large_scorer(rule: str | None) -> dict:
    """:func:`bright_scorer` (default cut 0.5, review from 0.2) with large_cut 0.1 from 10 mm."""
    data = bright_scorer(cut=0.5, review_from=0.2)
    data["modes"]["default"]["large_cut"] = 0.1
    data["large_from_mm"] = 10.0
    if rule is not None:
        data["large_rule"] = rule
    return data


def test_the_axial_rule_keeps_only_measurable_large_candidates_from_the_large_cut():
    scorer = scorer_from_dict(large_scorer("axial_measurable"))
    assert scorer.large_rule == "axial_measurable" and scorer.needs_measurable
    features = np.zeros((3, len(FEATURES)))
    features[:, F["log_diameter_mm"]] = np.log([12.0, 14.0, 6.0])
    measurable = np.array([True, False, True])  # 12 mm round; 14 mm in 3D but flat / elongated; 6 mm
    lesion, possible = scorer.decide("default", np.full(3, 0.3), features, measurable)
    assert lesion.tolist() == [True, False, False]  # only the measurable large one from 0.1
    assert possible.tolist() == [False, True, True]  # the others: the mode's cut 0.5, review from 0.2
    with pytest.raises(ValueError, match="axial measurability"):
        scorer.decide("default", np.full(3, 0.3), features)


def test_a_scorer_file_without_the_key_keeps_the_3d_diameter_rule():
    scorer = scorer_from_dict(large_scorer(None))
    assert scorer.large_rule == "core_diameter" and not scorer.needs_measurable
    features = np.zeros((2, len(FEATURES)))
    features[:, F["log_diameter_mm"]] = np.log([12.0, 14.0])
    for measurable in (None, np.array([True, False])):  # measurability does not count
        assert scorer.decide("default", np.full(2, 0.3), features, measurable)[0].tolist() == [True, True]
    without_large = bright_scorer()  # no large_from_mm: the rule never needs measurability
    without_large["large_rule"] = "axial_measurable"
    assert not scorer_from_dict(without_large).needs_measurable
    with pytest.raises(ScorerError, match="s.json: .*unknown large_rule 'volume'"):
        scorer_from_dict(large_scorer("volume"), "s.json")


def scene():
    """A 48^3 1 mm block, brain = a ball of radius 22, with two faintly bright candidates of
    probability 0.95 (lesion probability ~0.27 by :func:`bright_scorer`): a sphere of radius 6
    (12 mm, RANO-BM measurable) and a tube along the axial axis (15 mm long, 3 mm across: 15 mm
    in 3D but not measurable on an axial slice)."""
    z, y, x = np.indices((48, 48, 48)).astype(float)
    brain = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 22 ** 2
    sphere = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 36
    tube = ((y - 24) ** 2 + (x - 10) ** 2 <= 1) & (abs(z - 24) <= 7)
    image = np.random.default_rng(0).normal(100, 5, brain.shape) * brain + 10 * (sphere | tube)
    prob = np.where(sphere | tube, 0.95, 0.01) * brain
    return images([prob.astype(np.float32), image.astype(np.float32), brain.astype(np.uint8)]), sphere, tube


def test_apply_scorer_lowers_the_cut_for_a_measurable_sphere_not_for_an_axial_tube():
    (p_img, ce, br), sphere, tube = scene()
    labels = candidate_labels(p_img, 0.5, 0.4)
    measurable = candidate_measurable(labels, p_img, 0.5)
    sphere_id, tube_id = int(labels[sphere][0]), int(labels[tube][0])
    assert measurable[sphere_id - 1] and not measurable[tube_id - 1]
    core = np.where(sitk.GetArrayFromImage(p_img) > 0.5, labels, 0).astype(np.uint16)
    rows = {r["lesion_id"]: r for r in lesion_table(images([core])[0])}  # the core, as the table measures it
    assert [rows[i + 1]["rano_bm_measurable"] for i in range(len(measurable))] == measurable.tolist()
    assert not candidate_measurable(labels, p_img, 0.99).any()  # no core above 0.99: nothing measurable
    old = apply_scorer(p_img, ce, br, scorer_from_dict(large_scorer(None)), "default", 0.4)
    assert len(old[1]) == 2 and not old[2]  # both >= 10 mm in 3D: both lesions from 0.1
    assert all(0.2 <= r["lesion_probability"] < 0.5 for r in old[1])  # between review_from and cut
    lab, table, possible, n = apply_scorer(p_img, ce, br, scorer_from_dict(large_scorer("axial_measurable")),
                                           "default", 0.4)
    assert n == 2 and len(table) == 1 and table[0]["rano_bm_measurable"]
    arr = sitk.GetArrayFromImage(lab)
    assert arr[sphere].all() and not arr[tube].any()
    assert len(possible) == 1 and not possible[0]["rano_bm_measurable"]


def test_stitched_scorers_must_share_the_large_rule():
    def gbt(rule):
        data = large_scorer(rule)
        data["model"] = {"kind": "gbt", "init": 0.0, "learning_rate": 0.1,
                         "trees": [{"feature": [-2], "threshold": [-2.0], "left": [-1], "right": [-1],
                                    "value": [0.5]}]}
        return data

    both = stitch(gbt("axial_measurable"), gbt("axial_measurable"), 1.5)
    assert scorer_from_dict(json.loads(json.dumps(both))).large_rule == "axial_measurable"
    with pytest.raises(StitchError, match="large_rule"):
        stitch(gbt(None), gbt("axial_measurable"), 1.5)


def test_a_lesion_kept_under_the_cut_for_its_size_is_named_for_review():
    """Only lesions under the mode's cut (kept by the large-candidate rule) are named, with their size
    and probability: on 20 fresh phantoms (seed 10300) one true 25 mm lesion drawn at 48 % of its
    volume (p 0.12) and one false 12 mm lesion (p 0.49)."""
    from BrainMetSegLib.candidate_stage import kept_below_cut_notes

    table = [{"lesion_id": 1, "axial_longest_diameter_mm": 31.9, "lesion_probability": 0.12},
             {"lesion_id": 2, "axial_longest_diameter_mm": 6.0, "lesion_probability": 0.97},
             {"lesion_id": 3, "axial_longest_diameter_mm": 12.4, "lesion_probability": 0.5}]
    notes = kept_below_cut_notes(table, 0.5, 10.0)
    assert len(notes) == 1 and notes[0].startswith("lesion 1 (32 mm) was kept at lesion probability 0.12, under the "
                                                   "cut 0.5, for its size (>= 10 mm)")
    assert "check it" in notes[0]
    assert kept_below_cut_notes(table[1:], 0.5, 10.0) == []
