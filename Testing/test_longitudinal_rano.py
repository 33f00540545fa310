"""RANO-BM response rules (BrainMetSegLib.longitudinal.rano) on hand-made measurement tables.

Each table is a list of time points (baseline first): track id -> Measure(longest mm,
perpendicular mm, axial slices). Every category and the edge cases the paper's wording fixes:
"at least 30 %" and "at least 20 %" are inclusive, the 5 mm absolute-increase condition, the
nadir, new / equivocal (small) new lesions and their confirmation, non-target lesions, targets.
"""

from __future__ import annotations

import pytest

from BrainMetSegLib.longitudinal.rano import (
    NOT_EVALUABLE,
    NOT_FROM_IMAGES,
    PD_TO_CONFIRM,
    Measure,
    RanoConfig,
    assess,
    choose_targets,
)


def M(longest: float, perpendicular: float | None = None, slices: int = 5) -> Measure:
    return Measure(longest, longest * 0.8 if perpendicular is None else perpendicular, slices)


def responses(*tps, **kw) -> list[str]:
    return [r.response for r in assess(list(tps), **kw).timepoints]


def test_target_choice_up_to_five_measurable_longest_first():
    base = {1: M(30), 2: M(12), 3: M(25), 4: M(11), 5: M(20), 6: M(15), 7: M(9.9),
            8: M(14, 4.9), 9: M(14, 8, slices=1), 10: M(10.0, 5.0, 2)}
    # 7 (< 10 mm), 8 (perpendicular < 5 mm) and 9 (one slice) are not measurable; 10 is, just.
    assert choose_targets(base) == [1, 2, 3, 5, 6]  # the five longest measurable
    assert choose_targets({10: M(10.0, 5.0, 2), 7: M(9.9)}) == [10]
    a = assess([base, base])
    assert a.targets == [1, 2, 3, 5, 6] and 4 in a.nontargets and 7 in a.nontargets
    assert a.baseline_sum_mm == pytest.approx(30 + 12 + 25 + 20 + 15)


def test_partial_response_at_exactly_thirty_percent():
    base = {1: M(20), 2: M(30)}  # sum 50
    assert responses(base, {1: M(14), 2: M(21)}) == ["PR"]  # 35 = exactly -30 %
    assert responses(base, {1: M(14.1), 2: M(21)}) == ["SD"]  # -29.8 %
    r = assess([base, {1: M(14), 2: M(21)}]).timepoints[0]
    assert r.change_from_baseline_pct == pytest.approx(-30.0) and r.target_response == "PR"


def test_progression_at_exactly_twenty_percent_over_nadir_with_five_mm():
    base = {1: M(25), 2: M(25)}  # sum 50
    # +20 % exactly (60), one lesion +10 mm: PD.
    assert responses(base, {1: M(35), 2: M(25)}) == ["PD"]
    # +19.8 % (59.9): SD.
    assert responses(base, {1: M(34.9), 2: M(25)}) == ["SD"]


def test_absolute_increase_condition():
    base = {k: M(12) for k in range(1, 6)}  # five targets, sum 60
    # +20 % (72) spread as +2.4 mm per lesion: no lesion grew by 5 mm -> not PD.
    r = assess([base, {k: M(14.4) for k in range(1, 6)}]).timepoints[0]
    assert r.change_from_nadir_pct == pytest.approx(20.0)
    assert r.response == "SD" and any("absolute" in x for x in r.reasons)
    # The same sum with one lesion +5 mm exactly: PD.
    grown = {1: M(17), 2: M(14.0), 3: M(14.0), 4: M(13.5), 5: M(13.5)}
    assert sum(m.longest_mm for m in grown.values()) == pytest.approx(72.0)
    assert responses(base, grown) == ["PD"]
    # 4.9 mm is not enough.
    assert responses(base, {1: M(16.9), 2: M(14.1), 3: M(14), 4: M(13.5), 5: M(13.5)}) == ["SD"]


def test_nadir_is_the_reference_for_progression():
    base = {1: M(30), 2: M(20)}  # 50
    shrunk = {1: M(18), 2: M(12)}  # 30: PR
    regrown = {1: M(24), 2: M(12)}  # 36 = +20 % over the nadir 30, lesion 1 +6 mm; still below baseline
    a = assess([base, shrunk, regrown])
    assert [r.response for r in a.timepoints] == ["PR", "PD"]
    assert a.timepoints[1].nadir_sum_mm == pytest.approx(30) and a.timepoints[1].change_from_baseline_pct < 0
    assert a.timepoints[1].after_progression is False and a.timepoints[0].confirmed is False


def test_complete_response_needs_every_lesion_gone():
    base = {1: M(20), 2: M(6)}  # target 1, non-target 2
    assert responses(base, {}) == ["CR"]
    a = assess([base, {2: M(5)}])
    assert a.timepoints[0].target_response == "CR" and a.timepoints[0].nontarget_response == "NCR/NPD"
    assert a.timepoints[0].response == "PR"  # targets gone, a non-target persists


def test_stable_disease():
    base = {1: M(20), 2: M(20)}
    assert responses(base, {1: M(22), 2: M(19)}) == ["SD"]


def test_new_lesion_makes_progression_but_a_small_one_is_to_be_confirmed():
    base = {1: M(20)}
    assert responses(base, {1: M(20), 9: M(12, 8, 3)}) == ["PD"]  # unequivocal (measurable) new lesion
    # Small new lesion (6 mm, below the 10 mm of measurable disease): equivocal -> "PD to be confirmed".
    a = assess([base, {1: M(20), 9: M(6, 5, 3)}])
    r = a.timepoints[0]
    assert r.response == PD_TO_CONFIRM and r.equivocal_new == [9] and r.new_lesions == []
    assert r.target_response == "SD"
    # ... confirmed on the next scan: PD dated from the scan that first showed it.
    a = assess([base, {1: M(20), 9: M(4, 3, 2)}, {1: M(20), 9: M(4.5, 3, 2)}])
    assert [x.response for x in a.timepoints] == ["PD", "SD"]
    assert any("confirmed" in x for x in a.timepoints[0].reasons) and a.timepoints[1].after_progression
    # ... gone on the next scan: never PD, the response targets give.
    a = assess([base, {1: M(20), 9: M(4, 3, 2)}, {1: M(20)}])
    assert [x.response for x in a.timepoints] == ["SD", "SD"]
    assert any("not confirmed" in x for x in a.timepoints[0].reasons)
    # All gone + a small new one: to be confirmed (not CR); gone again on the next scan: CR.
    assert responses(base, {9: M(4, 3, 2)}) == [PD_TO_CONFIRM]
    assert responses(base, {9: M(4, 3, 2)}, {}) == ["CR", "CR"]
    assert assess([base, {9: M(4, 3, 2)}, {9: M(4, 3, 2)}]).timepoints[0].response == "PD"
    # A new lesion on a single axial slice is equivocal whatever its size.
    assert assess([base, {1: M(20), 9: M(14, 6, 1)}]).timepoints[0].equivocal_new == [9]
    # The size limit is a setting (this project's choice, not the paper's).
    assert responses(base, {1: M(20), 9: M(6, 5, 2)}, config=RanoConfig(equivocal_below_mm=5.0)) == ["PD"]
    # Low confidence (when a limit is set and the measure carries one) is equivocal too.
    sure, unsure = Measure(14, 10, 4, confidence=0.99), Measure(14, 10, 4, confidence=0.96)
    cfg = RanoConfig(equivocal_below_confidence=0.98)
    assert responses(base, {1: M(20), 9: sure}, config=cfg) == ["PD"]
    assert responses(base, {1: M(20), 9: unsure}, config=cfg) == [PD_TO_CONFIRM]
    # By default a new lesion under a calibrated lesion probability of 0.9 is equivocal (a 1-in-10
    # chance of a false lesion is too much to call PD on); a lesion without one is judged by size.
    assert responses(base, {1: M(20), 9: unsure}) == ["PD"]
    assert responses(base, {1: M(20), 9: Measure(14, 10, 4, confidence=0.78)}) == [PD_TO_CONFIRM]
    assert responses(base, {1: M(20), 9: Measure(14, 10, 4, confidence=0.9)}) == ["PD"]
    off = RanoConfig(equivocal_below_confidence=None)
    assert responses(base, {1: M(20), 9: Measure(14, 10, 4, confidence=0.78)}, config=off) == ["PD"]


def test_target_that_cannot_be_assessed_is_not_evaluable():
    base = {1: M(20), 2: M(15), 3: M(6)}  # targets 1, 2; non-target 3
    # Target 2 outside the follow-up's field of view: NE, never a (false) PR or CR.
    a = assess([base, {1: M(20), 3: M(6)}], unassessable=[set(), {2}])
    r = a.timepoints[0]
    assert r.target_response == NOT_EVALUABLE and r.response == NOT_EVALUABLE
    assert any("cannot be assessed" in x for x in r.reasons)
    assert responses(base, {1: M(20), 3: M(6)}) == ["PR"]  # what it would say otherwise (-43 %)
    # Unequivocal progression elsewhere still makes PD.
    progressed = assess([base, {1: M(20), 3: M(6), 7: M(15, 10, 4)}], unassessable=[set(), {2}])
    assert progressed.timepoints[0].response == "PD"
    # A non-target that cannot be assessed blocks CR only.
    assert assess([base, {}], unassessable=[set(), {3}]).timepoints[0].response == NOT_EVALUABLE
    assert assess([base, {}]).timepoints[0].response == "CR"


def test_reappearing_lesion_is_not_new():
    base = {1: M(20), 2: M(6)}
    a = assess([base, {1: M(20)}, {1: M(20), 2: M(6)}])
    assert a.timepoints[1].new_lesions == [] and a.timepoints[1].response == "SD"


def test_non_target_progression():
    base = {1: M(20), 2: M(6)}
    a = assess([base, {1: M(20), 2: M(11)}])  # non-target +5 mm
    assert a.timepoints[0].nontarget_response == "PD" and a.timepoints[0].response == "PD"
    assert responses(base, {1: M(20), 2: M(10.9)}) == ["SD"]
    assert responses(base, {1: M(20), 2: M(11)}, config=RanoConfig(nontarget_progression_mm=None)) == ["SD"]


def test_no_measurable_disease_and_no_disease():
    base = {1: M(6), 2: M(4)}  # only non-measurable lesions: no targets
    a = assess([base, {1: M(5)}, {}])
    assert a.targets == [] and [r.response for r in a.timepoints] == ["NCR/NPD", "CR"]
    assert a.timepoints[0].target_response == "none"
    assert responses({}, {}) == ["NED"]
    assert responses({}, {3: M(4, 3, 2)}) == [PD_TO_CONFIRM]  # equivocal, pending
    assert responses({}, {3: M(4, 3, 2)}, {}) == ["NED", "NED"]  # not confirmed
    assert responses({}, {3: M(12, 6, 3)}) == ["PD"]


def test_a_lesion_that_appeared_later_and_is_still_there_is_no_complete_response():
    # Seen in a real run (issue 26, synthetic patient): a false "new" lesion confirmed on the
    # next scan while the baseline lesion had gone was reported as CR there, lesion present.
    base, new = {1: M(6)}, {2: M(12)}
    a = assess([base, new, {2: M(12)}])
    assert [r.response for r in a.timepoints] == ["PD", "NCR/NPD"]
    assert a.timepoints[1].after_progression and "still present" in " ".join(a.timepoints[1].reasons)
    assert responses({}, {3: M(12)}, {3: M(12)}) == ["PD", "NCR/NPD"]  # never "no evidence of disease"
    targets_gone = responses({1: M(20)}, {1: M(20), 2: M(12)}, {2: M(12)})
    assert targets_gone == ["PD", "PR"]  # targets gone, later lesion present: not CR
    assert responses(base, {2: M(4, 3, 2)}, {2: M(4, 3, 2)}) == ["PD", "NCR/NPD"]  # equivocal, then confirmed


def test_confirmation_of_response_needs_four_weeks():
    base = {1: M(20)}
    pr = {1: M(12)}
    a = assess([base, pr, pr])
    assert a.timepoints[0].confirmed is True and a.timepoints[1].confirmed is None
    a = assess([base, pr, pr], days=[0, 60, 75])  # second scan only 15 days later
    assert a.timepoints[0].confirmed is None
    a = assess([base, pr, pr], days=[0, 60, 90])
    assert a.timepoints[0].confirmed is True


def test_radiographic_only_is_said():
    a = assess([{1: M(20)}, {1: M(20)}])
    assert a.timepoints[0].radiographic_only and "corticosteroid" in a.note and a.note == NOT_FROM_IMAGES
    assert "clinical status" in a.to_dict()["note"]


def test_a_lesion_the_prior_made_does_not_confirm_the_equivocal_one_it_came_from():
    """Demo 2.4.0 with the prior: seed 7900's synth_005 (the next scan's below-cut candidate
    promoted because the equivocal lesion lay there, then confirming it) and seed 7300's synth_003
    (the equivocal lesion itself promoted because the next scan had one, then confirmed by it):
    PD from one scan's evidence. Confirming needs two sightings that are not promoted."""
    base = {1: M(20)}
    promoted = Measure(4.5, 3, 2, promoted=True)
    a = assess([base, {1: M(20), 9: M(4, 3, 2)}, {1: M(20), 9: promoted}])
    assert a.timepoints[0].response == "SD"
    assert any("only as a lesion the prior made" in x for x in a.timepoints[0].reasons)
    a = assess([base, {1: M(20), 9: promoted}, {1: M(20), 9: M(4, 3, 2)}])
    assert [x.response for x in a.timepoints] == ["SD", "SD"]
    # two sightings of its own: confirmed, PD from the scan that first showed it
    a = assess([base, {1: M(20), 9: M(4, 3, 2)}, {1: M(20), 9: promoted}, {1: M(20), 9: M(5, 3, 2)}])
    assert a.timepoints[0].response == "PD"
    assert any("confirmed on time point 3" in x for x in a.timepoints[0].reasons)
    a = assess([base, {1: M(20), 9: promoted}, {1: M(20), 9: M(4, 3, 2)}, {1: M(20), 9: M(5, 3, 2)}])
    assert a.timepoints[0].response == "PD"


def _pieces(longest: float, n: int = 2) -> Measure:
    return Measure(longest, longest * 0.8, 5, pieces=n)


def test_growth_from_a_nadir_measured_in_pieces_is_to_be_confirmed():
    """A target seen in pieces reads small; its "growth" on the next scan may be the pieces joining
    again (a rescan of unchanged lesions gave PD so): PD to be confirmed, PD when a later scan shows
    the progression again, else what the targets give without it."""
    base = {1: M(20), 2: M(20)}  # sum 40
    broken = {1: M(20), 2: _pieces(6)}  # sum 26: -35 %
    whole = {1: M(20), 2: M(20)}  # +54 % over the nadir, lesion 2 +14 mm
    a = assess([base, broken, whole])
    r = a.timepoints[1]
    assert r.response == PD_TO_CONFIRM and r.target_response == PD_TO_CONFIRM
    assert r.target_if_unconfirmed == "SD" and any("in pieces" in x for x in r.reasons)
    # ... confirmed by a later scan that shows the progression again: PD from the first.
    a = assess([base, broken, whole, {1: M(21), 2: M(20)}])
    # (the last scan's own growth waits for a scan after it, as an equivocal new lesion does)
    assert [x.response for x in a.timepoints] == ["PR", "PD", PD_TO_CONFIRM]
    assert a.timepoints[1].target_response == "PD" and a.timepoints[2].after_progression
    assert any("seen again on time point 3" in x for x in a.timepoints[1].reasons)
    # ... not confirmed: the response without it (the sum is back at the nadir's: SD).
    a = assess([base, broken, whole, {1: M(20), 2: _pieces(6)}])
    assert [x.response for x in a.timepoints][1] == "SD"
    assert a.timepoints[1].target_response == "SD"
    assert any("not confirmed" in x for x in a.timepoints[1].reasons)
    # A lesion measured whole at its nadir that grows is PD at once, as is one gone and back.
    assert responses(base, {1: M(20), 2: M(6)}, whole)[1] == "PD"
    assert responses(base, {1: M(20)}, whole)[1] == "PD"
    # Several grown lesions: PD at once when one of them was whole at its nadir.
    assert responses(base, {1: M(10), 2: _pieces(6)}, whole)[1] == "PD"
    # One lesion of the scan (pieces = 1) is the paper's rule unchanged.
    assert responses(base, {1: M(20), 2: _pieces(6, 1)}, whole)[1] == "PD"


def test_a_scan_where_a_target_could_not_be_assessed_sets_no_nadir():
    """A target outside one follow-up's field of view is not 0 mm there: that scan's sum is no
    nadir, nor its 0 the lesion's smallest size (the next scan, the lesion unchanged, read PD)."""
    base = {1: M(20), 2: M(20)}
    cut = {1: M(20)}  # lesion 2 outside the field of view
    a = assess([base, cut, base], unassessable=[set(), {2}, set()])
    assert [r.response for r in a.timepoints] == [NOT_EVALUABLE, "SD"]
    assert a.timepoints[1].nadir_sum_mm == 40 and a.timepoints[1].change_from_nadir_pct == 0
    # Growth is measured from the scans where it was seen: +7 mm, sum +17.5 %: SD; +10 mm, +25 %: PD.
    assert responses(base, cut, {1: M(20), 2: M(27)}, unassessable=[set(), {2}, set()]) == [NOT_EVALUABLE, "SD"]
    assert responses(base, cut, {1: M(20), 2: M(30)}, unassessable=[set(), {2}, set()]) == [NOT_EVALUABLE, "PD"]


def test_a_target_seen_only_as_a_possible_lesion_is_not_measured_as_gone():
    """A target the model half-missed on a rescan (a candidate below the cut at its place) read
    as PR there and as PD when it was found again: with the option, NE there, and no nadir."""
    base = {1: M(20), 2: M(20)}
    missed = {1: M(20)}  # lesion 2 only a possible lesion on this scan
    ne = RanoConfig(possible_target_not_evaluable=True)
    a = assess([base, missed, base], ne, possible_only=[set(), {2}, set()])
    assert [r.response for r in a.timepoints] == [NOT_EVALUABLE, "SD"]
    assert any("possible lesion" in x for x in a.timepoints[0].reasons)
    # Off by default (it cost a right PR on fresh phantoms): measured as gone, and its return is
    # growth from a nadir where it was half-missed: "PD to be confirmed" (PD if a later scan confirms).
    assert responses(base, missed, base, possible_only=[set(), {2}, set()]) == ["PR", PD_TO_CONFIRM]
    a = assess([base, missed, base], possible_only=[set(), {2}, set()])
    assert any("only as a possible lesion" in x for x in a.timepoints[1].reasons)
    assert responses(base, missed, base, base, possible_only=[set(), {2}, set(), set()]) == ["PR", "PD", PD_TO_CONFIRM]
    # Gone without a trace (no possible lesion there) and back: PD at once, as the paper reads it.
    assert responses(base, missed, base) == ["PR", "PD"]
    # A possible lesion the prior made a lesion is half-missed the same way.
    promoted = {1: M(20), 2: Measure(6, 4.8, 5, promoted=True)}
    assert responses(base, promoted, base) == ["PR", PD_TO_CONFIRM]
    assert responses(base, {1: M(20), 2: M(6)}, base) == ["PR", "PD"]
    # A non-target seen only as a possible lesion is not a target: unchanged (absent).
    base3 = {1: M(20), 3: M(6)}
    assert responses(base3, {1: M(20)}, possible_only=[set(), {3}], config=ne) == ["SD"]
