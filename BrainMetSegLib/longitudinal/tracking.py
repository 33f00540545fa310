"""Lesions followed across time points: registration, matching, the longitudinal table, RANO-BM.

    from BrainMetSegLib.longitudinal import TimePoint, compare_timepoints
    result = compare_timepoints([TimePoint("baseline", img0, lab0), TimePoint("month 3", img1, lab1)])
    result.tracks[0].at[1].volume_mm3, result.rano.timepoints[0].response, result.to_dict()

Every follow-up is registered rigidly to the baseline. A *track* is one lesion followed over
time; its id is stable across time points (baseline lesions keep their baseline lesion id,
new lesions get the next free ids in order of appearance). Each follow-up is matched against
the most recent appearance of every track (tracks that went absent included, so a lesion that
comes back keeps its id). Measurements are taken on each scan's own grid (the segmentation's
lesion table); only the matching works in baseline space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from ..image_edge import ImageEdgeConfig, measure_rows
from ..lesions import LesionTableRow, lesion_table
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .below_cut import BelowCut, candidates_on_baseline, sightings
from .colours import track_colour
from .matching import MatchConfig, Reference, assign_link, link_statuses, match_lesions
from .rano import RESPONSE_WORDS, Measure, RanoAssessment, RanoConfig, TimepointResponse, assess
from .reasons import explain
from .registration import Registration, describe, extent_inside, from_description, register_followup

#: Status of a track on a scan whose field of view does not cover all of its extent.
NOT_ASSESSABLE = "not-evaluable"
#: Status of a track on a scan where it is no lesion but a candidate of the scan's candidate
#: stage lies at its place (scored below the cut): seen, not measured.
BELOW_CUT = "below-cut"


@dataclass
class TimePoint:
    """One scan: CE-T1 image, instance label map on the image's grid (lesion id per voxel), the
    lesion table (rows of :func:`BrainMetSegLib.lesions.lesion_table`; measured when None), an
    optional date as days since baseline, where it came from, and the candidates its candidate
    stage scored below the cut (:mod:`.below_cut`; None: no candidate stage); the probability
    map the labels were drawn from and the level they were drawn at (``p > outline``): with
    both, lesions are measured on the probability's outline (:func:`~BrainMetSegLib.lesions.lesion_table`)."""

    name: str
    image: sitk.Image
    labels: sitk.Image
    table: list[LesionTableRow] | None = None
    days: float | None = None
    source: str = ""
    below_cut: BelowCut | None = None
    probability: sitk.Image | None = None
    outline: float | None = None
    edge: ImageEdgeConfig | None = None  # set: lesions measured on the image's edge where it holds


@dataclass(frozen=True)
class CompareConfig:
    match: MatchConfig = MatchConfig()
    rano: RanoConfig = RanoConfig()
    registration_seed: int = 0


@dataclass
class LesionAtTime:
    """A track at one time point.

    status: "present", "new" (first seen here), "split" (seen as several pieces), "merged"
    (other tracks' lesions joined this one; ``merged_with`` lists them), "merged-into" (its
    lesion is counted under track ``merged_into``), "absent", "not-yet-seen",
    "not-evaluable" (the scan does not cover all of it: neither present nor absent), or
    "below-cut" (no lesion, but a candidate the candidate stage scored below its cut lies there:
    ``below_cut_probability`` is its lesion probability, None when under the review floor).
    lesion_ids: the time point's own lesion ids (its label map / table) making up the track.
    method: how it was matched ("overlap", "distance", "" for baseline/new/absent).
    Diameters are RANO-BM axial diameters (mm; several pieces: measured as one lesion, the
    union of the pieces); volume the pieces' sum; centroid in RAS mm on that time point's scan;
    confidence: the candidate stage's calibrated lesion probability (of several pieces, the
    largest; None without a candidate stage, e.g. hand-drawn label maps).
    promoted: a possible lesion of this scan made a lesion by the candidate-stage prior.
    diameters_on: where the diameters were measured (the lesion table's column: "probability"
    outline, "labels" or the "image" edge; "mixed" for pieces measured differently).
    """

    timepoint: int
    status: str
    lesion_ids: list[int] = field(default_factory=list)
    method: str = ""
    volume_mm3: float | None = None
    longest_mm: float | None = None
    perpendicular_mm: float | None = None
    longest_3d_mm: float | None = None
    axial_slices: int | None = None
    centroid_ras_mm: list[float] | None = None
    merged_into: int | None = None
    merged_with: list[int] = field(default_factory=list)
    confidence: float | None = None
    below_cut_probability: float | None = None
    promoted: bool = False
    diameters_on: str = ""

    @property
    def seen(self) -> bool:
        return self.volume_mm3 is not None

    def measure(self) -> Measure | None:
        if not self.seen:
            return None
        return Measure(self.longest_mm or 0.0, self.perpendicular_mm or 0.0, self.axial_slices or 0,
                       self.volume_mm3 or 0.0, self.confidence, self.promoted, max(len(self.lesion_ids), 1))


@dataclass
class Track:
    """One lesion over time. role: "target" / "non-target" (chosen at baseline) / "new".
    new_at: time point of first appearance (None for baseline lesions); resolved_at: first time
    point of the final run of absences (None when seen on the last scan)."""

    track_id: int
    role: str
    at: list[LesionAtTime]
    new_at: int | None = None
    resolved_at: int | None = None

    def reference(self) -> LesionAtTime:
        """The measurement changes are reported against: baseline, or first appearance."""
        return self.at[self.new_at or 0]

    def change_pct(self, t: int, what: str = "volume_mm3") -> float | None:
        ref, cur = getattr(self.reference(), what), getattr(self.at[t], what)
        if ref is None or ref <= 0 or t < (self.new_at or 0):
            return None
        return 100.0 * ((cur or 0.0) - ref) / ref


@dataclass
class TimepointInfo:
    name: str
    source: str
    days: float | None
    lesions: int
    registration: dict | None


@dataclass
class LongitudinalResult:
    """Tracks, RANO-BM assessment, per time point the track label map (track id per voxel, on that
    scan's own grid; matched lesions share the id, hence the colour, across scans) and the
    follow-up -> baseline registrations (None for the baseline)."""

    timepoints: list[TimepointInfo]
    tracks: list[Track]
    rano: RanoAssessment
    track_maps: list[sitk.Image]
    registrations: list[Registration | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "timepoints": [asdict(t) for t in self.timepoints],
            "tracks": [{**asdict(tr), "colour_rgb": track_colour(tr.track_id),
                        "change_pct": {"volume": [tr.change_pct(t) for t in range(len(tr.at))],
                                       "longest": [tr.change_pct(t, "longest_mm") for t in range(len(tr.at))]}}
                       for tr in self.tracks],
            "rano_bm": self.rano.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: dict, track_maps: list[sitk.Image]) -> LongitudinalResult:
        """The inverse of :meth:`to_dict` (e.g. ``brainmetseg compare``'s ``longitudinal.json``) with
        the track maps read back; rigid registrations are rebuilt from their recorded parameters."""
        rano = doc["rano_bm"]
        assessment = RanoAssessment(rano["targets"], rano["nontargets"], rano["baseline_sum_mm"],
                                    [TimepointResponse(**t) for t in rano["timepoints"]],
                                    RanoConfig(**rano["config"]), rano["note"])
        tracks = [Track(tr["track_id"], tr["role"], [LesionAtTime(**a) for a in tr["at"]], tr["new_at"],
                        tr["resolved_at"]) for tr in doc["tracks"]]
        infos = [TimepointInfo(**t) for t in doc["timepoints"]]
        registrations = [None if k == 0 or info.registration is None else from_description(info.registration)
                         for k, info in enumerate(infos)]
        return cls(infos, tracks, assessment, list(track_maps), registrations)

    def rano_rows(self) -> list[dict]:
        """The RANO-BM assessment flattened: one row per follow-up (``rano_bm.csv``)."""
        return [{"timepoint": r.index, "name": self.timepoints[r.index].name, "target_sum_mm": r.target_sum_mm,
                 "nadir_sum_mm": r.nadir_sum_mm, "change_from_baseline_pct": r.change_from_baseline_pct,
                 "change_from_nadir_pct": r.change_from_nadir_pct, "target": r.target_response,
                 "non_target": r.nontarget_response, "new_lesions": " ".join(map(str, r.new_lesions)),
                 "equivocal_new": " ".join(map(str, r.equivocal_new)), "radiographic_response": r.response,
                 "response_in_words": RESPONSE_WORDS.get(r.response, r.response),
                 "confirmed": "" if r.confirmed is None else r.confirmed, "reasons": "; ".join(r.reasons)}
                for r in self.rano.timepoints]

    def table_rows(self) -> list[dict]:
        """The longitudinal table flattened: one row per track and time point."""
        rows = []
        for tr in self.tracks:
            for t, at in enumerate(tr.at):
                rows.append({
                    "track_id": tr.track_id, "role": tr.role, "timepoint": t, "timepoint_name": self.timepoints[t].name,
                    "status": at.status, "lesion_ids": " ".join(str(i) for i in at.lesion_ids),
                    "method": at.method, "volume_mm3": at.volume_mm3, "axial_longest_diameter_mm": at.longest_mm,
                    "axial_perpendicular_diameter_mm": at.perpendicular_mm, "longest_diameter_mm": at.longest_3d_mm,
                    "axial_slices": at.axial_slices, "volume_change_pct": tr.change_pct(t),
                    "diameter_change_pct": tr.change_pct(t, "longest_mm"),
                    "new": tr.new_at == t, "resolved": tr.resolved_at is not None and t >= tr.resolved_at,
                    "merged_into": at.merged_into, "below_cut_probability": at.below_cut_probability,
                    "promoted_by_prior": at.promoted, "diameters_on": at.diameters_on,
                })
        return rows


def _centroid_lps(row: LesionTableRow) -> np.ndarray:
    return np.array([-row["centroid_r"], -row["centroid_a"], row["centroid_s"]], float)


def _combine(t: int, status: str, rows: list[LesionTableRow], method: str) -> LesionAtTime:
    """One track's measurement from its pieces (several when it split)."""
    vol = np.array([r["volume_mm3"] for r in rows], float)
    w = vol / vol.sum() if vol.sum() > 0 else np.full(len(rows), 1.0 / len(rows))
    ras = np.sum([w[k] * np.array([r["centroid_r"], r["centroid_a"], r["centroid_s"]]) for k, r in enumerate(rows)], 0)
    return LesionAtTime(
        timepoint=t, status=status, lesion_ids=sorted(int(r["lesion_id"]) for r in rows), method=method,
        volume_mm3=float(vol.sum()), longest_mm=float(sum(r["axial_longest_diameter_mm"] for r in rows)),
        perpendicular_mm=float(max(r["axial_perpendicular_diameter_mm"] for r in rows)),
        longest_3d_mm=float(max(r["longest_diameter_mm"] for r in rows)),
        axial_slices=int(max(r["axial_slices"] for r in rows)), centroid_ras_mm=[round(float(v), 3) for v in ras],
        confidence=max((float(p) for r in rows if (p := r.get("lesion_probability")) not in (None, "")
                        and np.isfinite(float(p))), default=None), promoted=any(r.get("promoted") for r in rows),
        diameters_on=on.pop() if len(on := {r.get("diameters_on", "") for r in rows}) == 1 else "mixed")


def _measure_pieces_as_one(tracks: dict[int, Track], t: int, track_map: sitk.Image,
                           timepoints: list[TimePoint]) -> None:
    """A track seen in several pieces on scan t (a lesion the segmentation broke up, or split)
    is measured as one lesion: the diameters of the pieces' union on the track map, not the sum
    of the pieces' diameters (which counts side-by-side fragments twice)."""
    pieces = [tr for tr in tracks.values() if tr.at[t].seen and len(tr.at[t].lesion_ids) > 1]
    if not pieces:
        return
    tp = timepoints[t]
    rows = {int(r["lesion_id"]): r for r in lesion_table(track_map, tp.probability, tp.outline)}
    if tp.edge is not None:
        measured, _ = measure_rows(tp.image, track_map, [rows[tr.track_id] for tr in pieces if tr.track_id in rows],
                                   tp.edge)
        rows.update({int(r["lesion_id"]): r for r in measured})
    for tr in pieces:
        at, row = tr.at[t], rows.get(tr.track_id)
        if row is None:
            continue
        at.longest_mm, at.perpendicular_mm = row["axial_longest_diameter_mm"], row["axial_perpendicular_diameter_mm"]
        at.longest_3d_mm, at.axial_slices = row["longest_diameter_mm"], row["axial_slices"]
        at.diameters_on = row["diameters_on"]


def _measures(tracks: list[Track], t: int) -> dict[int, Measure]:
    return {tr.track_id: m for tr in tracks if (m := tr.at[t].measure()) is not None}


def compare_timepoints(timepoints: list[TimePoint], config: CompareConfig = CompareConfig(),
                       registrations: list[Registration | None] | None = None,
                       progress: ProgressCallback = no_progress) -> LongitudinalResult:
    """Follow lesions over ``timepoints`` (baseline first) and assess RANO-BM.

    registrations: optional, per time point, a known follow-up -> baseline registration (entry 0
    ignored); None entries (or None) are registered here.
    """
    if len(timepoints) < 2:
        raise ValueError("compare_timepoints needs a baseline and at least one follow-up")
    base = timepoints[0]
    n_t = len(timepoints)
    tables = [tp.table if tp.table is not None else lesion_table(tp.labels, tp.probability, tp.outline)
              for tp in timepoints]
    tracks, refs = _baseline_tracks(base, tables[0], n_t)
    state = {"next_id": max(tracks, default=0) + 1}
    infos = [TimepointInfo(base.name, base.source, base.days, len(tables[0]), None)]
    maps = [sitk.Cast(base.labels, sitk.sitkUInt16)]
    regs: list[Registration | None] = [None]
    unassessable: list[set[int]] = [set()]
    for t in range(1, n_t):
        tp = timepoints[t]
        progress(ProgressEvent("register", (t - 1) / (n_t - 1), f"registering {tp.name} to {base.name}"))
        reg = registrations[t] if registrations is not None and registrations[t] is not None else \
            register_followup(base.image, tp.image, tp.source or tp.name, config.registration_seed)
        regs.append(reg)
        outside = {tid for tid, ref in refs.items()
                   if not extent_inside(ref.voxels, base.labels, tp.labels, reg)}
        lut = _match_followup(t, tp, tables[t], base, reg, tracks, refs, outside, config, state)
        unassessable.append(outside)
        maps.append(_relabel(tp.labels, lut))
        _measure_pieces_as_one(tracks, t, maps[-1], timepoints)
        infos.append(TimepointInfo(tp.name, tp.source, tp.days, len(tables[t]), describe(reg)))
    progress(ProgressEvent("register", 1.0, "follow-ups registered and matched"))
    if any(tp.below_cut is not None for tp in timepoints):
        _mark_below_cut(tracks, refs, timepoints, regs, config.match.contact_mm)
    ordered = [tracks[k] for k in sorted(tracks)]
    for tr in ordered:
        absent_tail = 0
        for at in reversed(tr.at):
            if at.status != "absent":
                break
            absent_tail += 1
        tr.resolved_at = n_t - absent_tail if absent_tail else None
    days = [tp.days for tp in timepoints]
    rano = assess([_measures(ordered, t) for t in range(n_t)], config.rano,
                  days if all(d is not None for d in days) else None, unassessable,
                  {tr.track_id for tr in ordered if tr.at[0].status == BELOW_CUT},
                  [{tr.track_id for tr in ordered if tr.at[t].status == BELOW_CUT
                    and tr.at[t].below_cut_probability is not None} for t in range(n_t)])
    for tr in ordered:
        if tr.track_id in rano.targets:
            tr.role = "target"
    explain(rano, ordered, [tp.name for tp in timepoints])
    return LongitudinalResult(infos, ordered, rano, maps, regs)


def _mark_below_cut(tracks: dict[int, Track], refs: dict[int, Reference], timepoints: list[TimePoint],
                    regs: list[Registration | None], contact_mm: float) -> None:
    """Tracks not seen as lesions on a scan where a below-cut candidate lies at their place
    (within ``contact_mm`` of their extent) are "below-cut" there; a track first seen on a
    follow-up whose place held a candidate on the baseline was there at baseline: not new."""
    base = timepoints[0]
    on_base = [candidates_on_baseline(tp.below_cut, tp.labels, base.labels, reg)
               for tp, reg in zip(timepoints, regs, strict=True)]
    seen = sightings({tid: ref.voxels for tid, ref in refs.items()}, base.labels, on_base,
                     [tp.below_cut for tp in timepoints], contact_mm)
    for tid, where in seen.items():
        tr = tracks[tid]
        for t, p in where.items():
            if tr.at[t].status in ("absent", "not-yet-seen"):
                tr.at[t] = LesionAtTime(t, BELOW_CUT, below_cut_probability=None if np.isnan(p) else round(p, 4))
        if tr.new_at is not None and tr.at[0].status == BELOW_CUT:
            tr.at[tr.new_at].status = "present"
            for at in tr.at[1:tr.new_at]:
                at.status = "absent" if at.status == "not-yet-seen" else at.status
            tr.new_at, tr.role = None, "non-target"


def _baseline_tracks(base: TimePoint, table: list[LesionTableRow],
                     n_t: int) -> tuple[dict[int, Track], dict[int, Reference]]:
    """A track (and its reference extent) per baseline lesion."""
    flat_base = sitk.GetArrayViewFromImage(base.labels).ravel()
    order = np.argsort(flat_base, kind="stable")
    bounds = np.searchsorted(flat_base[order], np.arange(int(flat_base.max(initial=0)) + 2))
    tracks, refs = {}, {}
    for row in table:
        lid = int(row["lesion_id"])
        at0 = _combine(0, "present", [row], "")
        tracks[lid] = Track(lid, "non-target", [at0] + [LesionAtTime(t, "absent") for t in range(1, n_t)])
        refs[lid] = Reference(order[bounds[lid]:bounds[lid + 1]], _centroid_lps(row))
    return tracks, refs


def _match_followup(t, tp, table, base, reg, tracks, refs, outside, config, state) -> dict[int, int]:
    """Match follow-up ``t`` against the tracks (updated in place); returns its lesion id -> track id."""
    n_t = len(next(iter(tracks.values())).at) if tracks else t + 1
    on_base = sitk.GetArrayFromImage(reg.labels_on_baseline(sitk.Cast(tp.labels, sitk.sitkUInt32), base.labels))
    rows = {int(r["lesion_id"]): r for r in table}
    cents = {lid: reg.followup_to_baseline_lps(_centroid_lps(r))[0] for lid, r in rows.items()}
    result = match_lesions(refs, on_base, cents, config.match, base.labels.GetSpacing())
    lut: dict[int, int] = {}
    for link in result.links:
        assigned = assign_link(link)
        for tid, (status, into, absorbed) in link_statuses(link, assigned).items():
            lids = assigned[tid]
            tr = tracks[tid]
            if not lids:
                tr.at[t] = LesionAtTime(t, "merged-into", method=link.method, merged_into=into)
                continue
            at = _combine(t, status, [rows[lid] for lid in lids], link.method)
            at.merged_with = absorbed
            tr.at[t] = at
            for lid in lids:
                lut[lid] = tid
            voxels = np.flatnonzero(np.isin(on_base.ravel(), lids))
            refs[tid] = Reference(np.union1d(refs[tid].voxels, voxels), np.mean([cents[lid] for lid in lids], 0))
    for tid in outside:  # the scan does not show all of it: neither present nor absent
        old = tracks[tid].at[t]
        tracks[tid].at[t] = LesionAtTime(t, NOT_ASSESSABLE, lesion_ids=old.lesion_ids, method=old.method)
    for lid in result.new:
        tid = state["next_id"]
        state["next_id"] += 1
        at = [LesionAtTime(s, "not-yet-seen") for s in range(t)] + [_combine(t, "new", [rows[lid]], "")] + \
             [LesionAtTime(s, "absent") for s in range(t + 1, n_t)]
        tracks[tid] = Track(tid, "new", at, new_at=t)
        refs[tid] = Reference(np.flatnonzero(on_base.ravel() == lid), cents[lid])
        lut[lid] = tid
    return lut


def _relabel(labels: sitk.Image, lut: dict[int, int]) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(labels)
    table = np.zeros(int(arr.max(initial=0)) + 1, np.uint16)
    for lid, tid in lut.items():
        if lid < table.size:
            table[lid] = tid
    out = sitk.GetImageFromArray(table[arr])
    out.CopyInformation(labels)
    return out
