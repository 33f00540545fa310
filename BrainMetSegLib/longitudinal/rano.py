"""RANO-BM response (Lin et al., Lancet Oncol 2015;16:e270-78) from lesion measurements over time.

Only the radiographic part of RANO-BM is computed here. The criteria also need the
corticosteroid dose (CR: none; PR/SD: stable or decreased) and the clinical status (stable or
improved; worse = PD); an image cannot give either, so every response is a *radiographic*
response and says so (:data:`NOT_FROM_IMAGES`).

The rules, as the paper states them (measurements are the longest axial diameter, mm):

- measurable lesion: longest diameter >= 10 mm, perpendicular diameter >= 5 mm, visible on
  >= 2 axial slices; up to 5 measurable lesions are chosen at baseline as targets (here: the 5
  with the longest diameter), every other lesion is non-target;
- complete response (CR): every target lesion gone, every non-target lesion gone, no new lesion;
- partial response (PR): sum of the targets' longest diameters >= 30 % below the baseline sum;
- progressive disease (PD): sum >= 20 % above the smallest sum on study (the nadir, baseline
  included) *and* at least one lesion larger by an absolute >= 5 mm; or unequivocal progression
  of non-target lesions; or a new lesion. A new lesion is one not present on prior scans and
  visible in at least two projections; an *equivocal* new lesion (e.g. because it is small) does
  not make PD until a later scan confirms it, and then PD dates from the scan that first showed it
  (until then the scan's response is "PD to be confirmed", :data:`PD_TO_CONFIRM`; when later
  scans do not show it, what targets and non-targets give);
- this module's caution, beyond the paper: a target PD whose every grown lesion had its smallest
  measurement on a scan where the segmentation saw it in several pieces or only as a possible
  lesion below the cut (a lesion broken up or half-missed there reads small or gone, and its
  "growth" may be the lesion found whole again) is also "PD to be confirmed":
  PD, dated from this scan, when a later scan shows the target progression again; otherwise what
  the targets give without it;
- a scan on which a target lesion cannot be assessed (outside its field of view) is "not
  evaluable" (:data:`NOT_EVALUABLE`) unless it shows unequivocal progression;
- stable disease (SD): neither PR nor PD;
- CR and PR must be sustained for at least 4 weeks (a later scan).

Where the paper leaves a number to the reader, this module picks one and names it in
:class:`RanoConfig` (equivocal size, what counts as unequivocal non-target progression, which
lesion's nadir the 5 mm is measured from); docs/longitudinal.md lists these choices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..lesions import RANO_MIN_LONGEST_MM, RANO_MIN_PERPENDICULAR_MM, RANO_MIN_SLICES
from ..options import EQUIVOCAL_BELOW_LESION_PROBABILITY

NOT_FROM_IMAGES = ("RANO-BM also needs the corticosteroid dose and the clinical status, which an image "
                   "cannot give: this is the radiographic response only; a clinician must add both.")

#: A scan whose only sign of progression is an equivocal new lesion: RANO-BM continues therapy
#: and lets the next scan decide (PD, back-dated, if it shows the lesion again).
PD_TO_CONFIRM = "PD to be confirmed"
#: A scan on which a target lesion cannot be assessed (e.g. outside its field of view), with no
#: unequivocal progression elsewhere: no response can be given.
NOT_EVALUABLE = "NE"
#: Response categories. "NCR/NPD" (non-CR/non-PD) is used when there is no target lesion at
#: baseline; "NED" when there was no lesion at all at baseline and no unequivocal one since.
CATEGORIES = ("CR", "PR", "SD", "PD", PD_TO_CONFIRM, "NCR/NPD", "NED", NOT_EVALUABLE)
#: Responses a front end must never show as a bare code: spelled out (:data:`RESPONSE_WORDS`).
CAUTION = (PD_TO_CONFIRM, NOT_EVALUABLE)
#: How front ends write each category in words (the report, the Slicer tables, the viewer).
RESPONSE_WORDS = {"CR": "complete response", "PR": "partial response", "SD": "stable disease",
                  "PD": "progressive disease", PD_TO_CONFIRM: "progression to be confirmed",
                  "NCR/NPD": "non-CR/non-PD", "NED": "no evidence of disease", NOT_EVALUABLE: "not evaluable"}

_EPS = 1e-9  # "at least 30 %", "at least 20 %", ">= 5 mm" are inclusive; absorb float round-off


@dataclass(frozen=True)
class RanoConfig:
    """Thresholds of the response rules (defaults: RANO-BM, Lin et al. 2015, except where noted).

    max_targets: up to 5 target lesions.
    min_longest_mm, min_perpendicular_mm, min_slices: measurable disease (10 mm, 5 mm, 2 slices).
    pr_decrease: PR when the target sum is at least this fraction below the baseline sum (0.30).
    pd_increase: PD when the sum is at least this fraction above the nadir (0.20) ...
    pd_absolute_mm: ... and at least one target lesion is at least this much (5 mm) larger than
        its own smallest measurement on study (the paper does not say which reference; we take
        the lesion's own nadir).
    new_min_slices: a new lesion must be seen on >= this many axial slices ("visible in at least
        two projections"); otherwise it is equivocal.
    equivocal_below_mm: a new lesion whose longest axial diameter is below this is equivocal
        ("for example, because of its small size", Lin et al. 2015). The paper gives no number;
        this project takes its own limit of measurable disease, 10 mm: a new lesion too small to
        be measured reproducibly makes "PD to be confirmed", and PD once a later scan shows it.
    equivocal_below_confidence: a new lesion whose confidence (:attr:`Measure.confidence`: the
        candidate stage's calibrated lesion probability) is below this is equivocal: PD only on
        a lesion with at most about a 1-in-10 chance of being false (0.9); ``None``: not used.
        Lesions without a confidence (a model without a candidate stage, hand-drawn label maps)
        are judged by size and slices only.
    nontarget_progression_mm: a non-target lesion whose longest axial diameter grows by at least
        this over the smallest size it was seen at counts as unequivocal non-target progression (the paper leaves
        "unequivocal" to the reader; 5 mm, this project's choice; ``None`` = never from images).
    confirm_days: CR/PR must be sustained this long (4 weeks) to be confirmed.
    possible_target_not_evaluable: a target seen on a follow-up only as a possible lesion (the
        candidate stage scored a candidate at its place below the cut, above the review floor)
        cannot be assessed there (NE, no nadir) instead of measured as gone. Off by default: on
        fresh phantoms (seed 11100) it turned a right PR into NE and fixed nothing
        (docs/longitudinal.md); kept for a reader who prefers NE to a response from a half-missed lesion.
    """

    max_targets: int = 5
    min_longest_mm: float = RANO_MIN_LONGEST_MM
    min_perpendicular_mm: float = RANO_MIN_PERPENDICULAR_MM
    min_slices: int = RANO_MIN_SLICES
    pr_decrease: float = 0.30
    pd_increase: float = 0.20
    pd_absolute_mm: float = 5.0
    new_min_slices: int = 2
    equivocal_below_mm: float = 10.0
    equivocal_below_confidence: float | None = EQUIVOCAL_BELOW_LESION_PROBABILITY
    nontarget_progression_mm: float | None = 5.0
    possible_target_not_evaluable: bool = False
    confirm_days: int = 28


@dataclass(frozen=True)
class Measure:
    """One lesion at one time point: longest and perpendicular axial diameters (mm), the number
    of axial slices it is seen on, its volume (mm^3) and the segmentation's confidence in it
    (0-1: the candidate stage's calibrated lesion probability; None when unknown, e.g. a model
    without a candidate stage or a hand-drawn label map).
    promoted: a lesion only because the prior made a possible lesion one (another scan has a
    lesion there): not a sighting of its own when an equivocal new lesion is confirmed.
    pieces: how many of the scan's lesions it was seen as (> 1: the segmentation broke it up)."""

    longest_mm: float
    perpendicular_mm: float = 0.0
    slices: int = 1
    volume_mm3: float = 0.0
    confidence: float | None = None
    promoted: bool = False
    pieces: int = 1

    def measurable(self, config: RanoConfig) -> bool:
        return (self.longest_mm >= config.min_longest_mm - _EPS
                and self.perpendicular_mm >= config.min_perpendicular_mm - _EPS
                and self.slices >= config.min_slices)


@dataclass
class TimepointResponse:
    """The radiographic RANO-BM assessment of one follow-up (index >= 1; baseline is 0).

    target_sum_mm: sum of the targets' longest diameters; baseline_sum_mm, nadir_sum_mm: the
    references (nadir = smallest sum before this scan, baseline included); change_*_pct: signed
    change in %; new_lesions / equivocal_new: track ids first seen on this scan; response:
    overall radiographic category; reasons: why, in words; confirmed: for CR/PR, whether a later
    scan (>= confirm_days later when dates are known) keeps it (None: no later scan yet);
    after_progression: an earlier scan was already PD (in a trial, assessment ends at PD; later
    scans are still assessed by the same rules, for information).
    target_if_unconfirmed: with a target response of "PD to be confirmed" (growth from a nadir
    where the lesion was half-missed), the target response should no later scan confirm it.
    """

    index: int
    target_sum_mm: float
    baseline_sum_mm: float
    nadir_sum_mm: float
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    target_response: str
    nontarget_response: str
    new_lesions: list[int]
    equivocal_new: list[int]
    response: str
    reasons: list[str] = field(default_factory=list)
    confirmed: bool | None = None
    after_progression: bool = False
    radiographic_only: bool = True
    target_if_unconfirmed: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RanoAssessment:
    """Targets and non-targets chosen at baseline, and one response per follow-up."""

    targets: list[int]
    nontargets: list[int]
    baseline_sum_mm: float
    timepoints: list[TimepointResponse]
    config: RanoConfig
    note: str = NOT_FROM_IMAGES

    def to_dict(self) -> dict:
        return {"targets": self.targets, "nontargets": self.nontargets, "baseline_sum_mm": self.baseline_sum_mm,
                "timepoints": [t.to_dict() for t in self.timepoints], "config": asdict(self.config),
                "note": self.note}


def choose_targets(baseline: dict[int, Measure], config: RanoConfig = RanoConfig()) -> list[int]:
    """Up to ``max_targets`` measurable lesions, longest first (ties: lower id first)."""
    measurable = [i for i, m in baseline.items() if m.measurable(config)]
    measurable.sort(key=lambda i: (-baseline[i].longest_mm, i))
    return sorted(measurable[: config.max_targets])


def _pct(value: float, reference: float) -> float | None:
    return None if reference <= 0 else 100.0 * (value - reference) / reference


def _longest(tp: dict[int, Measure], i: int) -> float:
    m = tp.get(i)
    return 0.0 if m is None else m.longest_mm


def _target_response(timepoints, targets, sums, t, config, reasons, blind,
                     possible) -> tuple[str, str | None]:
    """Target response of scan t: CR / PR / SD / PD, "none" without targets, NE when a target
    cannot be assessed on it, "PD to be confirmed" when every lesion that grew had its smallest
    measurement where the segmentation half-missed it (in pieces, or only a possible lesion:
    ``possible``, per scan); and, for that one, the response without the progression.
    blind: per scan, the lesions that cannot be assessed on it (left out of nadirs and minima)."""
    response = _target_category(timepoints, targets, sums, t, config, reasons, blind)
    if response != "PD":
        return response, None
    grew = [i for i in targets if _growth_mm(timepoints, i, t, blind) >= config.pd_absolute_mm - _EPS]
    smallest = {i: _smallest_at(timepoints, i, t, blind) for i in grew}
    half_missed = {i: s for i, s in smallest.items() if _half_missed(timepoints, possible, i, s)}
    if len(half_missed) < len(grew):
        return "PD", None
    reasons.append(f"lesion(s) {sorted(half_missed)} measured smallest where the segmentation saw them in pieces or "
                   f"only as a possible lesion (time point(s) {sorted(set(half_missed.values()))}): the growth may "
                   "be the lesion found whole again; PD if a later scan shows the target progression again")
    rest: list[str] = []
    return PD_TO_CONFIRM, _target_category(timepoints, targets, sums, t, config, rest, blind, allow_pd=False)


def _nadir(sums: list[float], t: int, targets, blind) -> float:
    """The smallest target sum before scan t, over the scans where every target could be
    assessed (a target outside a scan's field of view is not 0 mm there; the baseline counts)."""
    return min(sums[s] for s in range(t) if not set(targets) & set(blind[s]))


def _half_missed(timepoints, possible, i: int, s: int) -> bool:
    """Whether scan s saw lesion i only in pieces or only as a possible lesion (below the cut; or
    a possible lesion the prior made a lesion)."""
    m = timepoints[s].get(i)
    return (m is None and i in possible[s]) or (m is not None and (m.pieces > 1 or m.promoted))


def _growth_mm(timepoints, i: int, t: int, blind) -> float:
    """Target i's longest diameter on scan t over its smallest before t (mm), on the scans where
    it could be assessed."""
    return _longest(timepoints[t], i) - _longest(timepoints[_smallest_at(timepoints, i, t, blind)], i)


def _smallest_at(timepoints, i: int, t: int, blind) -> int:
    """The scan before t where target i measured smallest (the first such) of those where it
    could be assessed (the baseline always)."""
    return min((s for s in range(t) if i not in blind[s]), key=lambda s: (_longest(timepoints[s], i), s))


def _target_category(timepoints, targets, sums, t, config, reasons, blind, allow_pd: bool = True) -> str:
    """CR / PR / SD / PD / "none" / NE of scan t by the paper's rules (``allow_pd=False``: the
    category if the growth is not counted)."""
    if not targets:
        return "none"
    unseen, nadir = set(blind[t]) & set(targets), _nadir(sums, t, targets, blind)
    if unseen:
        reasons.append(f"target lesion(s) {sorted(unseen)} cannot be assessed on this scan: target response "
                       "not evaluable")
        return NOT_EVALUABLE
    if sums[t] <= _EPS:
        reasons.append("every target lesion is gone")
        return "CR"
    grew = [i for i in targets if _growth_mm(timepoints, i, t, blind) >= config.pd_absolute_mm - _EPS]
    rel_up = sums[t] - nadir >= config.pd_increase * nadir - _EPS
    if rel_up and grew and allow_pd:
        reasons.append(f"target sum {sums[t]:.1f} mm is >= {config.pd_increase:.0%} above the nadir "
                       f"{nadir:.1f} mm and lesion(s) {grew} grew by >= {config.pd_absolute_mm:g} mm")
        return "PD"
    if sums[0] - sums[t] >= config.pr_decrease * sums[0] - _EPS:
        reasons.append(f"target sum {sums[t]:.1f} mm is >= {config.pr_decrease:.0%} below the baseline "
                       f"{sums[0]:.1f} mm")
        return "PR"
    if rel_up and not grew:
        reasons.append(f"target sum >= {config.pd_increase:.0%} above the nadir but no lesion grew by "
                       f">= {config.pd_absolute_mm:g} mm (RANO-BM's absolute condition): not PD")
    return "SD"


def _nontarget_response(timepoints, nontargets, t, config, reasons, unseen) -> str:
    """Non-target response of scan t: CR (all gone), NCR/NPD, PD (unequivocal growth), "none";
    NE instead of CR when a non-target lesion cannot be assessed on it."""
    tp = timepoints[t]
    if not nontargets:
        return "none"
    if all(i not in tp for i in nontargets):
        if unseen:
            reasons.append(f"non-target lesion(s) {sorted(unseen)} cannot be assessed on this scan")
            return NOT_EVALUABLE
        return "CR"
    if config.nontarget_progression_mm is not None:
        # Against the smallest size the lesion was *seen* at: a non-target lesion that went
        # away and comes back at its old size has not progressed unequivocally.
        grown = [i for i in nontargets if i in tp and _longest(tp, i) - min(
            timepoints[s][i].longest_mm for s in range(t) if i in timepoints[s]
        ) >= config.nontarget_progression_mm - _EPS]
        if grown:
            reasons.append(f"non-target lesion(s) {grown} grew by >= {config.nontarget_progression_mm:g} mm "
                           "(taken as unequivocal progression)")
            return "PD"
    return "NCR/NPD"


def is_equivocal(m: Measure, config: RanoConfig) -> bool:
    """A new lesion RANO-BM calls equivocal: small, on too few slices, or of low confidence."""
    low = (config.equivocal_below_confidence is not None and m.confidence is not None
           and m.confidence < config.equivocal_below_confidence)
    return m.slices < config.new_min_slices or m.longest_mm < config.equivocal_below_mm - _EPS or low


def _with_later_lesions(nontarget: str, persisting: list[int], reasons: list[str]) -> str:
    """Lesions first seen on an earlier follow-up and still present are disease like non-target
    lesions: no complete response (nor "no evidence of disease") while one is there."""
    if not persisting or nontarget not in ("CR", "none"):
        return nontarget
    reasons.append(f"lesion(s) {sorted(persisting)} first seen on an earlier follow-up (or below the cut at "
                   "baseline) are still present: not a complete response")
    return "NCR/NPD"


def _overall(base, target, nontarget, unequivocal, equivocal) -> str:
    if "PD" in (target, nontarget) or unequivocal:
        return "PD"
    if equivocal or target == PD_TO_CONFIRM:
        return PD_TO_CONFIRM
    if NOT_EVALUABLE in (target, nontarget):
        return NOT_EVALUABLE
    if not base and nontarget == "none":  # no disease at baseline, none since
        return "NED"
    if target in ("CR", "none") and nontarget in ("CR", "none"):
        return "CR"
    if target in ("CR", "PR"):
        return "PR"
    if target == "SD":
        return "SD"
    return "NCR/NPD"  # no targets, non-targets persist


def assess(timepoints: list[dict[int, Measure]], config: RanoConfig = RanoConfig(),
           days: list[float] | None = None, unassessable: list[set[int]] | None = None,
           below_cut_at_baseline: set[int] | None = None,
           possible_only: list[set[int]] | None = None) -> RanoAssessment:
    """RANO-BM radiographic response of every follow-up.

    timepoints: per scan (baseline first), track id -> :class:`Measure` of each lesion seen on it
        (a lesion not seen is absent; ids are stable across scans: the matching's job).
    days: optional scan dates as days since baseline, for the 4-week confirmation of CR/PR.
    unassessable: optional, per scan, track ids that cannot be assessed on it (e.g. outside its
        field of view): neither present nor absent; a target among them makes the scan NE
        unless it shows unequivocal progression elsewhere.
    below_cut_at_baseline: optional track ids seen at baseline only below the segmentation's cut
        (a candidate not called a lesion): not measured there, but present, so never "new" later
        (RANO-BM: a new lesion is one not present on prior scans); a later lesion, like a
        non-target one (no CR while it is there).
    possible_only: optional, per scan, track ids seen there only as a possible lesion (below the
        cut): target growth measured from such a sighting is "PD to be confirmed"; with
        ``config.possible_target_not_evaluable`` targets among them cannot be assessed on it.
    """
    if not timepoints:
        raise ValueError("assess() needs at least the baseline time point")
    base = timepoints[0]
    unassessable = unassessable or [set() for _ in timepoints]
    targets = choose_targets(base, config)
    nontargets = sorted(i for i in base if i not in targets)
    possible_any = [set(p) for p in (possible_only or [set() for _ in timepoints])]
    possible = [p & set(targets) if config.possible_target_not_evaluable else set() for p in possible_any]
    unassessable = [set(u) | p for u, p in zip(unassessable, possible, strict=True)]
    sums = [sum(_longest(tp, i) for i in targets) for tp in timepoints]
    seen_before: set[int] = set(base) | set(below_cut_at_baseline or ())
    results: list[TimepointResponse] = []
    for t in range(1, len(timepoints)):
        tp, unseen = timepoints[t], set(unassessable[t])
        reasons: list[str] = [f"target lesion(s) {sorted(possible[t])} seen only as a possible lesion (below the cut): "
                              "not measured as gone"] if possible[t] else []
        target, unconfirmed = _target_response(timepoints, targets, sums, t, config, reasons, unassessable,
                                               possible_any)
        nontarget = _nontarget_response(timepoints, nontargets, t, config, reasons, unseen & set(nontargets))
        # New lesions: tracks never seen before this scan.
        new = sorted(i for i in tp if i not in seen_before)
        nontarget = _with_later_lesions(nontarget, [i for i in tp if i not in base and i not in new], reasons)
        seen_before |= set(tp)
        equivocal = [i for i in new if is_equivocal(tp[i], config)]
        unequivocal = [i for i in new if i not in equivocal]
        if unequivocal:
            reasons.append(f"new lesion(s) {unequivocal}")
        if equivocal:
            reasons.append(f"equivocal new lesion(s) {equivocal} (small, on < {config.new_min_slices} slices or of "
                           "low confidence): PD if a later scan confirms them")
        response = _overall(base, target, nontarget, unequivocal, equivocal)
        nadir = _nadir(sums, t, targets, unassessable)
        results.append(TimepointResponse(
            index=t, target_sum_mm=round(sums[t], 3), baseline_sum_mm=round(sums[0], 3),
            nadir_sum_mm=round(nadir, 3), change_from_baseline_pct=_pct(sums[t], sums[0]),
            change_from_nadir_pct=_pct(sums[t], nadir), target_response=target, nontarget_response=nontarget,
            new_lesions=unequivocal, equivocal_new=equivocal, response=response, reasons=reasons,
            target_if_unconfirmed=unconfirmed))
    _confirm_equivocal(results, timepoints, base)
    _confirm_responses(results, days, config)
    first_pd = next((r.index for r in results if r.response == "PD"), None)
    for r in results:
        r.after_progression = first_pd is not None and r.index > first_pd
    return RanoAssessment(targets, nontargets, round(sums[0], 3), results, config)


def _confirm_equivocal(results: list[TimepointResponse], timepoints, base) -> None:
    """"PD to be confirmed" becomes PD when a later scan shows one of its equivocal new lesions
    again, or the target progression again where that rested on lesions measured in pieces
    (RANO-BM: PD from the scan that first showed it); when a later scan confirms neither, the
    response targets and non-targets give without it.
    Only sightings of its own count: a lesion the prior promoted (a possible lesion made a lesion
    because another scan has one there) rests on that other scan, so confirming needs two
    sightings that are not promoted (else one scan's lesion would confirm itself)."""
    progressed = [r.target_response in ("PD", PD_TO_CONFIRM) for r in results]  # before any is settled
    for k, r in enumerate(results):
        if r.response != PD_TO_CONFIRM:
            continue
        own = {i: [t for t in range(r.index, len(timepoints)) if i in timepoints[t]
                   and not timepoints[t][i].promoted] for i in r.equivocal_new}
        confirmed = {i: ts[1] for i, ts in own.items() if len(ts) >= 2}
        seen_again = [i for i in r.equivocal_new if i not in confirmed and any(
            i in timepoints[t] for t in range(r.index + 1, len(timepoints)))]
        grew_again = next((results[j].index for j in range(k + 1, len(results)) if progressed[j]), None) \
            if r.target_response == PD_TO_CONFIRM else None
        if seen_again:
            r.reasons.append(f"equivocal new lesion(s) {seen_again} seen again, but one of the sightings only as a "
                             "lesion the prior made from the other: not a confirmation")
        if confirmed or grew_again is not None:
            r.response = "PD"
            r.reasons += [f"equivocal new lesion {i} confirmed on time point {t}: PD dates from time point {r.index}"
                          for i, t in confirmed.items()]
            if grew_again is not None:
                r.target_response = "PD"
                r.reasons.append(f"target progression seen again on time point {grew_again}: PD dates from time "
                                 f"point {r.index}")
        elif r.index + 1 < len(timepoints):
            if r.target_response == PD_TO_CONFIRM:
                r.target_response = r.target_if_unconfirmed
                r.reasons.append("target progression not seen again on a later scan: not confirmed")
            r.response = _overall(base, r.target_response, r.nontarget_response, [], [])
            if r.equivocal_new and not seen_again:
                r.reasons.append(f"equivocal new lesion(s) {r.equivocal_new} not seen on any later scan: not confirmed")


def _confirm_responses(results: list[TimepointResponse], days, config: RanoConfig) -> None:
    """CR and PR must be sustained for >= 4 weeks: confirmed when a later scan keeps them."""
    rank = {"CR": 2, "PR": 1}
    for k, r in enumerate(results):
        if r.response not in rank:
            continue
        later = results[k + 1:]
        if days is not None:
            later = [x for x in later if days[x.index] - days[r.index] >= config.confirm_days]
        if not later:
            r.confirmed = None
            continue
        r.confirmed = rank.get(later[0].response, 0) >= rank[r.response]
