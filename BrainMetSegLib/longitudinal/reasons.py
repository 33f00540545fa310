"""What the RANO-BM numbers hide, said in each follow-up's reasons (the report, rano_bm.csv).

Split lesions measured as one, lesions outside a scan's field of view, and what the candidate
stage's record adds (:mod:`.below_cut`): a lesion seen below the cut on the baseline (so not
new), a new lesion seen below the cut on an earlier follow-up, a lesion below the cut on this
scan (not counted), a possible lesion made a lesion by the prior.
"""

from __future__ import annotations

from .rano import RanoAssessment


def _p(value: float | None) -> str:
    return "lesion probability under the review floor" if value is None else f"lesion probability {value:.2f}"


def explain(rano: RanoAssessment, tracks: list, names: list[str]) -> None:
    """Append the reasons to ``rano``'s follow-ups (in place). tracks: the comparison's
    :class:`.tracking.Track` objects (not imported: tracking imports this module); names: the
    time points'."""
    for r in rano.timepoints:
        t = r.index
        for tr in tracks:
            at = tr.at[t]
            if at.status in ("split", "merged+split"):
                r.reasons.append(f"lesion {tr.track_id} is seen in {len(at.lesion_ids)} pieces (split): measured "
                                 "as one lesion")
            elif at.status == "not-evaluable":
                r.reasons.append(f"lesion {tr.track_id} is (partly) outside this scan's field of view: not evaluable")
            elif at.status == "below-cut":
                r.reasons.append(f"lesion {tr.track_id}: only a candidate below the cut on this scan "
                                 f"({_p(at.below_cut_probability)}): not counted as a lesion")
            if at.promoted:
                r.reasons.append(f"lesion {tr.track_id} is a possible lesion on this scan, made a lesion by the "
                                 "prior (another scan has a lesion there)")
            first = next((s for s, a in enumerate(tr.at) if a.seen), None)
            if first == t and tr.at[0].status == "below-cut":
                r.reasons.append(f"lesion {tr.track_id} was seen below the cut on {names[0]} "
                                 f"({_p(tr.at[0].below_cut_probability)}): there at baseline, not new")
            elif first == t and tr.new_at == t:
                earlier = [names[s] for s in range(1, t) if tr.at[s].status == "below-cut"]
                if earlier:
                    r.reasons.append(f"new lesion {tr.track_id} was seen below the cut on {', '.join(earlier)}")
