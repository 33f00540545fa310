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
  (until then the scan's response is what targets and non-targets give, with the lesion listed);
- stable disease (SD): neither PR nor PD;
- CR and PR must be sustained for at least 4 weeks (a later scan).

Where the paper leaves a number to the reader, this module picks one and names it in
:class:`RanoConfig` (equivocal size, what counts as unequivocal non-target progression, which
lesion's nadir the 5 mm is measured from); docs/longitudinal.md lists these choices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..lesions import RANO_MIN_LONGEST_MM, RANO_MIN_PERPENDICULAR_MM, RANO_MIN_SLICES

NOT_FROM_IMAGES = ("RANO-BM also needs the corticosteroid dose and the clinical status, which an image "
                   "cannot give: this is the radiographic response only; a clinician must add both.")

#: Response categories. "NCR/NPD" (non-CR/non-PD) is used when there is no target lesion at
#: baseline; "NED" when there was no lesion at all at baseline and no unequivocal one since.
CATEGORIES = ("CR", "PR", "SD", "PD", "NCR/NPD", "NED")

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
        ("for example, because of its small size"; the number, 5 mm, is this project's choice).
    nontarget_progression_mm: a non-target lesion whose longest axial diameter grows by at least
        this over the smallest size it was seen at counts as unequivocal non-target progression (the paper leaves
        "unequivocal" to the reader; 5 mm, this project's choice; ``None`` = never from images).
    confirm_days: CR/PR must be sustained this long (4 weeks) to be confirmed.
    """

    max_targets: int = 5
    min_longest_mm: float = RANO_MIN_LONGEST_MM
    min_perpendicular_mm: float = RANO_MIN_PERPENDICULAR_MM
    min_slices: int = RANO_MIN_SLICES
    pr_decrease: float = 0.30
    pd_increase: float = 0.20
    pd_absolute_mm: float = 5.0
    new_min_slices: int = 2
    equivocal_below_mm: float = 5.0
    nontarget_progression_mm: float | None = 5.0
    confirm_days: int = 28


@dataclass(frozen=True)
class Measure:
    """One lesion at one time point: longest and perpendicular axial diameters (mm), the number
    of axial slices it is seen on, and its volume (mm^3)."""

    longest_mm: float
    perpendicular_mm: float = 0.0
    slices: int = 1
    volume_mm3: float = 0.0

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


def assess(timepoints: list[dict[int, Measure]], config: RanoConfig = RanoConfig(),
           days: list[float] | None = None) -> RanoAssessment:
    """RANO-BM radiographic response of every follow-up.

    timepoints: per scan (baseline first), track id -> :class:`Measure` of each lesion seen on it
        (a lesion not seen is absent; ids are stable across scans: the matching's job).
    days: optional scan dates as days since baseline, for the 4-week confirmation of CR/PR.
    """
    if not timepoints:
        raise ValueError("assess() needs at least the baseline time point")
    base = timepoints[0]
    targets = choose_targets(base, config)
    nontargets = sorted(i for i in base if i not in targets)
    sums = [sum(_longest(tp, i) for i in targets) for tp in timepoints]
    seen_before: set[int] = set(base)
    results: list[TimepointResponse] = []
    first_seen: dict[int, int] = {}
    for t in range(1, len(timepoints)):
        tp = timepoints[t]
        nadir = min(sums[:t])
        reasons: list[str] = []
        # Targets.
        if not targets:
            target = "none"
        elif sums[t] <= _EPS:
            target = "CR"
            reasons.append("every target lesion is gone")
        else:
            grew = [i for i in targets
                    if _longest(tp, i) - min(_longest(timepoints[s], i) for s in range(t)) >= config.pd_absolute_mm - _EPS]
            rel_up = sums[t] - nadir >= config.pd_increase * nadir - _EPS
            if rel_up and grew:
                target = "PD"
                reasons.append(f"target sum {sums[t]:.1f} mm is >= {config.pd_increase:.0%} above the nadir "
                               f"{nadir:.1f} mm and lesion(s) {grew} grew by >= {config.pd_absolute_mm:g} mm")
            elif sums[0] - sums[t] >= config.pr_decrease * sums[0] - _EPS:
                target = "PR"
                reasons.append(f"target sum {sums[t]:.1f} mm is >= {config.pr_decrease:.0%} below the baseline "
                               f"{sums[0]:.1f} mm")
            else:
                target = "SD"
                if rel_up:
                    reasons.append(f"target sum >= {config.pd_increase:.0%} above the nadir but no lesion grew by "
                                   f">= {config.pd_absolute_mm:g} mm (RANO-BM's absolute condition): not PD")
        # Non-targets.
        if not nontargets:
            nontarget = "none"
        elif all(i not in tp for i in nontargets):
            nontarget = "CR"
        else:
            nontarget = "NCR/NPD"
            if config.nontarget_progression_mm is not None:
                # Against the smallest size the lesion was *seen* at: a non-target lesion that went
                # away and comes back at its old size has not progressed unequivocally.
                grown = [i for i in nontargets if i in tp and _longest(tp, i) - min(
                    timepoints[s][i].longest_mm for s in range(t) if i in timepoints[s]
                ) >= config.nontarget_progression_mm - _EPS]
                if grown:
                    nontarget = "PD"
                    reasons.append(f"non-target lesion(s) {grown} grew by >= {config.nontarget_progression_mm:g} mm "
                                   "(taken as unequivocal progression)")
        # New lesions: tracks never seen before this scan.
        new = sorted(i for i in tp if i not in seen_before)
        for i in new:
            first_seen[i] = t
        seen_before |= set(tp)
        unequivocal = [i for i in new if tp[i].slices >= config.new_min_slices
                       and tp[i].longest_mm >= config.equivocal_below_mm - _EPS]
        equivocal = [i for i in new if i not in unequivocal]
        if unequivocal:
            reasons.append(f"new lesion(s) {unequivocal}")
        if equivocal:
            reasons.append(f"equivocal new lesion(s) {equivocal} (small or on < {config.new_min_slices} slices): "
                           "PD only if a later scan confirms them")
        if "PD" in (target, nontarget) or unequivocal:
            response = "PD"
        elif not base:  # no disease at baseline; an equivocal new lesion is pending (see above)
            response = "NED"
        elif target in ("CR", "none") and nontarget in ("CR", "none"):
            # An equivocal new lesion does not change the response until a later scan confirms
            # it (then PD is back-dated to this scan, see _confirm_equivocal).
            response = "CR"
        elif target in ("CR", "PR"):
            response = "PR"
        elif target == "SD":
            response = "SD"
        else:  # no targets, non-targets persist (or an equivocal new lesion pending)
            response = "NCR/NPD"
        results.append(TimepointResponse(
            index=t, target_sum_mm=round(sums[t], 3), baseline_sum_mm=round(sums[0], 3), nadir_sum_mm=round(nadir, 3),
            change_from_baseline_pct=_pct(sums[t], sums[0]), change_from_nadir_pct=_pct(sums[t], nadir),
            target_response=target, nontarget_response=nontarget, new_lesions=unequivocal, equivocal_new=equivocal,
            response=response, reasons=reasons))
    _confirm_equivocal(results, timepoints, first_seen)
    _confirm_responses(results, days, config)
    first_pd = next((r.index for r in results if r.response == "PD"), None)
    for r in results:
        r.after_progression = first_pd is not None and r.index > first_pd
    return RanoAssessment(targets, nontargets, round(sums[0], 3), results, config)


def _confirm_equivocal(results: list[TimepointResponse], timepoints, first_seen: dict[int, int]) -> None:
    """An equivocal new lesion still present on a later scan is confirmed: PD from the scan that
    first showed it (RANO-BM)."""
    for r in results:
        for i in r.equivocal_new:
            later = [t for t in range(r.index + 1, len(timepoints)) if i in timepoints[t]]
            if later:
                r.response = "PD"
                r.reasons.append(f"equivocal new lesion {i} confirmed on time point {later[0]}: PD dates from "
                                 f"time point {r.index}")


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
