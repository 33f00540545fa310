"""Every time point of a comparison measured by one rule (longitudinal.measuring, issue 26)."""

from __future__ import annotations

import SimpleITK as sitk
from test_lesion_subvoxel import smooth_ellipsoid

from BrainMetSegLib.lesions import ON_LABELS, ON_PROBABILITY, lesion_table
from BrainMetSegLib.longitudinal.measuring import measure_alike, outline_level
from BrainMetSegLib.longitudinal.tracking import TimePoint, compare_timepoints
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

RUN = {"settings": {"threshold_used": 0.9, "min_volume_mm3_used": 0.0, "outline_threshold_used": 0.5}}


def test_outline_level_from_the_run_record():
    stage = {"threshold_used": 0.95, "outline_threshold_used": 0.4, "candidate_stage": {"candidate_threshold": 0.5}}
    assert outline_level({"settings": stage}) == 0.4
    stage["outline_threshold_used"] = 0.7  # capped at the candidate threshold, as the stage draws them
    assert outline_level({"settings": stage}) == 0.5
    assert outline_level(RUN) == 0.5
    assert outline_level({"settings": {"threshold_used": 0.95}}) == 0.95  # before outlines: drawn at detection
    assert outline_level({"settings": {}}) is None and outline_level(None) is None


def _timepoint(name: str, centre):
    prob, _ = smooth_ellipsoid((4.6, 4.6, 4.6), centre)
    labels = lesion_labels(prob, OperatingPoint(0.9, 0.0, 0.5))
    table = lesion_table(labels, prob)  # e.g. lesions.json of an older version: on the label map
    table[0]["lesion_probability"] = 0.8  # the scorer's, kept
    return TimePoint(name, prob, labels, table), prob


def test_every_time_point_on_the_probability_outline_or_every_one_on_its_labels():
    (tp0, p0), (tp1, p1) = _timepoint("t0", (19.3, 19.6, 11.2)), _timepoint("t1", (19.8, 19.1, 11.7))
    record = measure_alike([tp0, tp1], [RUN, RUN], [p0, p1])
    assert record["rule"] == "probability outline" and record["outline"] == [0.5, 0.5]
    assert record["lesions_by_method"] == {"t0": {ON_PROBABILITY: 1}, "t1": {ON_PROBABILITY: 1}}
    for tp, prob in ((tp0, p0), (tp1, p1)):
        (row,) = tp.table
        assert row["diameters_on"] == ON_PROBABILITY and row["lesion_probability"] == 0.8
        assert row["axial_longest_diameter_mm"] == lesion_table(tp.labels, prob, 0.5)[0]["axial_longest_diameter_mm"]
        assert tp.probability is prob and tp.outline == 0.5
    # the same lesion at two sub-voxel positions: the same size on the outline
    assert abs(tp1.table[0]["axial_longest_diameter_mm"] / tp0.table[0]["axial_longest_diameter_mm"] - 1) < 0.02
    result = compare_timepoints([tp0, tp1])
    assert [at.diameters_on for at in result.tracks[0].at] == [ON_PROBABILITY] * 2
    assert result.table_rows()[0]["diameters_on"] == ON_PROBABILITY

    # one time point without its probability map (e.g. --labels): every one on its label map
    (tp0, p0), (tp1, _) = _timepoint("t0", (19.3, 19.6, 11.2)), _timepoint("t1", (19.8, 19.1, 11.7))
    record = measure_alike([tp0, tp1], [RUN, None], [p0, None])
    assert record["rule"] == "label map" and record["outline"] is None
    assert [tp.table[0]["diameters_on"] for tp in (tp0, tp1)] == [ON_LABELS] * 2
    assert tp0.probability is None and tp0.outline is None
    assert tp0.table[0]["lesion_probability"] == 0.8


def test_a_track_in_pieces_is_measured_on_the_outline_of_their_union():
    """Two detections split apart by the watershed: one track when matched to one baseline
    lesion; its union is still a region of the probability at the level (the face between the
    pieces is inside it), so it is measured on the outline."""
    prob_a, _ = smooth_ellipsoid((5.5, 5.5, 5.5), (14.0, 19.5, 11.5), edge_mm=1.2)
    prob_b, _ = smooth_ellipsoid((5.5, 5.5, 5.5), (24.3, 19.5, 11.5), edge_mm=1.2)
    prob_fu = sitk.Maximum(prob_a, prob_b)
    labels_fu = lesion_labels(prob_fu, OperatingPoint(0.95, 0.0, 0.3))
    prob_bl, _ = smooth_ellipsoid((10.5, 6.0, 6.0), (19.1, 19.5, 11.5), edge_mm=1.2)
    labels_bl = lesion_labels(prob_bl, OperatingPoint(0.95, 0.0, 0.3))
    run = {"settings": {"threshold_used": 0.95, "outline_threshold_used": 0.3}}
    tps = [TimePoint("t0", prob_bl, labels_bl), TimePoint("t1", prob_fu, labels_fu)]
    measure_alike(tps, [run, run], [prob_bl, prob_fu])
    result = compare_timepoints(tps)
    (track,) = result.tracks
    at = track.at[1]
    assert len(at.lesion_ids) == 2 and at.diameters_on == ON_PROBABILITY
    single = sum(r["axial_longest_diameter_mm"] for r in tps[1].table)
    assert 18.0 < at.longest_mm < single  # the union's diameter, not the pieces' sum
