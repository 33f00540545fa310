"""compare and the candidate stage: candidates below the cut recovered from a result's record,
"not new" where the baseline had a candidate, and the symmetric candidate-stage prior.

Small hand-made arrays on 1 mm grids, identity registrations: fast, no model.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.candidate_stage import candidate_labels
from BrainMetSegLib.longitudinal import Registration, TimePoint, compare_timepoints
from BrainMetSegLib.longitudinal.below_cut import BelowCut, below_cut
from BrainMetSegLib.longitudinal.consistency import SourceInfo, check_series
from BrainMetSegLib.longitudinal.prior import promote_candidates

SHAPE = (40, 40, 80)
IDENTITY = Registration(sitk.Euler3DTransform())


def _ball(centre, r):
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


def _image(array) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.0, 1.0, 1.0))
    return img


def _labels(*balls) -> sitk.Image:
    arr = np.zeros(SHAPE, np.uint16)
    for k, (centre, r) in enumerate(balls, 1):
        arr[_ball(centre, r)] = k
    return _image(arr)


def _cands(*balls, probabilities, review_from=0.1, sensitive=0.1) -> BelowCut:
    arr = np.zeros(SHAPE, np.int32)
    for k, (centre, r) in enumerate(balls, 1):
        arr[_ball(centre, r)] = k
    return BelowCut(arr, np.array(probabilities, float), review_from, sensitive)


BRAIN = _image(np.random.default_rng(0).normal(100, 10, SHAPE).astype(np.float32))
TARGET = ((20, 20, 15), 7)    # a 15 mm lesion on every scan
LOOKALIKE = ((20, 20, 45), 1)  # a 3 mm look-alike: a candidate at baseline, a "lesion" at follow-up
FAR = ((20, 20, 70), 1)        # a 3 mm lesion at follow-up only, far from any candidate


def test_a_lookalike_candidate_at_baseline_is_not_new_at_follow_up_a_lesion_far_from_candidates_is():
    base = TimePoint("t0", BRAIN, _labels(TARGET), below_cut=_cands(LOOKALIKE, probabilities=[float("nan")]))
    fu = TimePoint("t1", BRAIN, _labels(TARGET, LOOKALIKE, FAR), below_cut=_cands(probabilities=[]))
    result = compare_timepoints([base, fu], registrations=[None, IDENTITY])
    r = result.rano.timepoints[0]
    lookalike = next(tr for tr in result.tracks if tr.at[1].lesion_ids == [2])
    far = next(tr for tr in result.tracks if tr.at[1].lesion_ids == [3])
    assert lookalike.at[0].status == "below-cut" and lookalike.at[0].below_cut_probability is None
    assert lookalike.new_at is None and lookalike.at[1].status == "present" and lookalike.role == "non-target"
    assert far.new_at == 1 and far.at[0].status == "not-yet-seen"
    assert r.equivocal_new == [far.track_id] and r.response == "PD to be confirmed"
    assert any("seen below the cut on t0" in x and "not new" in x for x in r.reasons)
    # Without the far one, the look-alike alone changes nothing: the target is stable.
    fu = TimePoint("t1", BRAIN, _labels(TARGET, LOOKALIKE), below_cut=_cands(probabilities=[]))
    assert compare_timepoints([base, fu], registrations=[None, IDENTITY]).rano.timepoints[0].response == "SD"
    # Without the candidate stage's record the same look-alike is a new lesion, as before.
    plain = [TimePoint("t0", BRAIN, _labels(TARGET)), TimePoint("t1", BRAIN, _labels(TARGET, LOOKALIKE))]
    assert compare_timepoints(plain, registrations=[None, IDENTITY]).rano.timepoints[0].response == "PD to be confirmed"


def test_a_lesion_that_shrank_below_the_cut_is_shown_below_cut_not_counted():
    base = TimePoint("t0", BRAIN, _labels(TARGET, ((20, 20, 45), 3)), below_cut=_cands(probabilities=[]))
    fu = TimePoint("t1", BRAIN, _labels(TARGET), below_cut=_cands(((20, 20, 45), 1), probabilities=[0.3]))
    result = compare_timepoints([base, fu], registrations=[None, IDENTITY])
    small = next(tr for tr in result.tracks if tr.track_id == 2)
    assert small.at[1].status == "below-cut" and small.at[1].below_cut_probability == 0.3 and not small.at[1].seen
    assert small.resolved_at is None
    assert any("only a candidate below the cut" in x for x in result.rano.timepoints[0].reasons)


def test_candidates_below_the_cut_are_recovered_from_the_probability_map_and_the_possible_list():
    prob = np.zeros(SHAPE, np.float32)
    for centre, r, p in (((20, 20, 15), 4, 0.99), ((20, 20, 40), 2, 0.9), ((20, 20, 60), 2, 0.8)):
        prob[_ball(centre, r)] = p
    prob[_ball((20, 20, 60), 3) & (prob == 0)] = 0.45  # outlined down to the run's outline threshold (0.4)
    probability = _image(prob)
    cands = candidate_labels(probability, 0.5, 0.4)
    lesions = _image((cands == cands[20, 20, 15]).astype(np.uint16))  # the stage kept the big one
    possible_id = cands[20, 20, 60]
    vox = np.argwhere(cands == possible_id)
    k, j, i = np.round(vox.mean(0)).astype(int)
    possible = [{"voxels": len(vox), "centroid_i": int(i), "centroid_j": int(j), "centroid_k": int(k),
                 "lesion_probability": 0.27}]
    stage = {"candidate_threshold": 0.5, "review_from": 0.1, "large_cut": 0.1}
    got = below_cut(probability, lesions, possible, stage, 0.4)
    assert got.labels.max() == 2 and got.sensitive_cut == 0.1
    at60, at40 = got.labels[20, 20, 60], got.labels[20, 20, 40]
    assert got.probability[at60 - 1] == 0.27 and np.isnan(got.probability[at40 - 1])
    assert (got.labels == at60).sum() == _ball((20, 20, 60), 3).sum()  # the same voxels the stage outlined
    assert got.row[at60 - 1] == 0 and got.row[at40 - 1] == -1  # its row in the possible list
    rest = got.without([int(at60)])
    assert rest.labels.max() == 1 and rest.row.tolist() == [-1] and np.isnan(rest.probability[0])


def test_candidate_stage_prior_promotes_possible_lesions_where_another_scan_has_a_lesion_on_every_scan():
    a, b, c = ((20, 20, 15), 4), ((20, 20, 45), 2), ((20, 20, 70), 2)
    labels = [_labels(a), _labels(b)]
    cands = [_cands(b, c, probabilities=[0.3, 0.3]),            # t0: B possible, C possible but no lesion elsewhere
             _cands(a, c, probabilities=[0.05, 0.3])]           # t1: A below the sensitive cut
    out, promoted = promote_candidates(labels, cands, [None, IDENTITY], 3.0)
    assert promoted == [{2: 1}, {}]  # t0 gets B (as lesion 2); t1 keeps A out (0.05 < 0.1)
    arr0 = sitk.GetArrayViewFromImage(out[0])
    assert arr0[20, 20, 45] == 2 and arr0[20, 20, 15] == 1 and arr0[20, 20, 70] == 0
    # Symmetric: A possible on t1 is promoted just as B was on t0.
    cands[1] = _cands(a, c, probabilities=[0.3, 0.3])
    out, promoted = promote_candidates(labels, cands, [None, IDENTITY], 3.0)
    assert promoted == [{2: 1}, {2: 1}] and sitk.GetArrayViewFromImage(out[1])[20, 20, 15] == 2


def test_runs_of_other_candidate_stage_settings_are_refused():
    def run(**stage):
        settings = {"threshold_used": 0.95, "candidate_stage": {"mode": "default", "cut": 0.5, **stage}}
        return {"model": {"sha256": "a" * 64}, "settings": settings}

    assert check_series([SourceInfo("t0", "a", run()), SourceInfo("t1", "b", run())]).refusals == []
    f = check_series([SourceInfo("t0", "a", run()), SourceInfo("t1", "b", run(mode="sensitive", cut=0.1))])
    assert any("candidate stage mode = sensitive" in x for x in f.refusals)
    f = check_series([SourceInfo("t0", "a", run()), SourceInfo("t1", "b", run(outside_brain_max_fraction=0.95))])
    assert any("outside_brain_max_fraction = 0.95" in x for x in f.refusals)  # a run before the rule
    plain = {"model": {"sha256": "a" * 64}, "settings": {"threshold_used": 0.95}}
    assert check_series([SourceInfo("t0", "a", run()), SourceInfo("t1", "b", plain)]).refusals
