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

from ..lesions import lesion_table
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .matching import Link, MatchConfig, Reference, match_lesions
from .rano import Measure, RanoAssessment, RanoConfig, assess
from .registration import Registration, register_followup


@dataclass
class TimePoint:
    """One scan: CE-T1 image, instance label map on the image's grid (lesion id per voxel), the
    lesion table (rows of :func:`BrainMetSegLib.lesions.lesion_table`; measured when None), an
    optional date as days since baseline, and where it came from."""

    name: str
    image: sitk.Image
    labels: sitk.Image
    table: list[dict] | None = None
    days: float | None = None
    source: str = ""


@dataclass(frozen=True)
class CompareConfig:
    match: MatchConfig = MatchConfig()
    rano: RanoConfig = RanoConfig()
    registration_seed: int = 0


@dataclass
class LesionAtTime:
    """A track at one time point.

    status: "present", "new" (first seen here), "split" (seen as several pieces), "merged"
    (this track's lesion joined others; ``merged_with`` lists them), "merged-into" (its
    lesion is counted under track ``merged_into``), "absent", or "not-yet-seen".
    lesion_ids: the time point's own lesion ids (its label map / table) making up the track.
    method: how it was matched ("overlap", "distance", "" for baseline/new/absent).
    Diameters are RANO-BM axial diameters (mm; several pieces: the longest diameters summed,
    as RECIST does for a fragmented lesion); centroid in RAS mm on that time point's scan.
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

    @property
    def seen(self) -> bool:
        return self.volume_mm3 is not None

    def measure(self) -> Measure | None:
        if not self.seen:
            return None
        return Measure(self.longest_mm or 0.0, self.perpendicular_mm or 0.0, self.axial_slices or 0,
                       self.volume_mm3 or 0.0)


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
                    "merged_into": at.merged_into,
                })
        return rows


# Colours that stay apart on a grey MR background (Slicer-like label palette).
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180))


def track_colour(track_id: int) -> list[int]:
    """RGB (0-255) of a track: the same on every time point and in every front end."""
    return list(_PALETTE[(track_id - 1) % len(_PALETTE)])


def _centroid_lps(row: dict) -> np.ndarray:
    return np.array([-row["centroid_r"], -row["centroid_a"], row["centroid_s"]], float)


def _combine(t: int, status: str, rows: list[dict], method: str) -> LesionAtTime:
    """One track's measurement from its pieces (several when it split)."""
    vol = np.array([r["volume_mm3"] for r in rows], float)
    w = vol / vol.sum() if vol.sum() > 0 else np.full(len(rows), 1.0 / len(rows))
    ras = np.sum([w[k] * np.array([r["centroid_r"], r["centroid_a"], r["centroid_s"]]) for k, r in enumerate(rows)], 0)
    return LesionAtTime(
        timepoint=t, status=status, lesion_ids=sorted(int(r["lesion_id"]) for r in rows), method=method,
        volume_mm3=float(vol.sum()), longest_mm=float(sum(r["axial_longest_diameter_mm"] for r in rows)),
        perpendicular_mm=float(max(r["axial_perpendicular_diameter_mm"] for r in rows)),
        longest_3d_mm=float(max(r["longest_diameter_mm"] for r in rows)),
        axial_slices=int(max(r["axial_slices"] for r in rows)), centroid_ras_mm=[round(float(v), 3) for v in ras])


def _assign(link: Link) -> dict[int, list[int]]:
    """Which follow-up lesions count under which track: each lesion goes to the track it shares
    most voxels with; a track left without a lesion has merged into another."""
    if len(link.tracks) == 1:
        return {link.tracks[0]: list(link.lesions)}
    out: dict[int, list[int]] = {t: [] for t in link.tracks}
    for lid in link.lesions:
        best = max(link.tracks, key=lambda t: (link.shared_voxels.get((t, lid), 0), -t))
        out[best].append(lid)
    return out


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
    tables = [tp.table if tp.table is not None else lesion_table(tp.labels) for tp in timepoints]
    base_arr = sitk.GetArrayViewFromImage(base.labels)
    tracks: dict[int, Track] = {}
    refs: dict[int, Reference] = {}
    flat_base = base_arr.ravel()
    order = np.argsort(flat_base, kind="stable")
    bounds = np.searchsorted(flat_base[order], np.arange(int(flat_base.max(initial=0)) + 2))
    for row in tables[0]:
        lid = int(row["lesion_id"])
        at0 = _combine(0, "present", [row], "")
        tracks[lid] = Track(lid, "non-target", [at0] + [LesionAtTime(t, "absent") for t in range(1, n_t)])
        refs[lid] = Reference(order[bounds[lid]:bounds[lid + 1]], _centroid_lps(row))
    next_id = max(tracks, default=0) + 1
    infos = [TimepointInfo(base.name, base.source, base.days, len(tables[0]), None)]
    maps = [sitk.Cast(base.labels, sitk.sitkUInt16)]
    regs: list[Registration | None] = [None]
    for t in range(1, n_t):
        tp = timepoints[t]
        progress(ProgressEvent("register", (t - 1) / (n_t - 1), f"registering {tp.name} to {base.name}"))
        reg = registrations[t] if registrations is not None and registrations[t] is not None else \
            register_followup(base.image, tp.image, tp.source or tp.name, config.registration_seed)
        regs.append(reg)
        on_base = sitk.GetArrayFromImage(reg.labels_on_baseline(sitk.Cast(tp.labels, sitk.sitkUInt32), base.labels))
        rows = {int(r["lesion_id"]): r for r in tables[t]}
        cents = {lid: reg.followup_to_baseline_lps(_centroid_lps(r))[0] for lid, r in rows.items()}
        result = match_lesions(refs, on_base, cents, config.match)
        lut: dict[int, int] = {}
        for link in result.links:
            assigned = _assign(link)
            for tid, lids in assigned.items():
                tr = tracks[tid]
                if not lids:
                    into = next(o for o, ls in assigned.items() if ls and any(
                        link.shared_voxels.get((tid, lid), 0) for lid in ls)) if link.shared_voxels else None
                    tr.at[t] = LesionAtTime(t, "merged-into", method=link.method, merged_into=into)
                    continue
                status = {"matched": "present", "split": "split"}.get(link.kind, "merged")
                if len(lids) > 1 and status == "merged":
                    status = "merged+split"
                at = _combine(t, status, [rows[lid] for lid in lids], link.method)
                if status.startswith("merged"):
                    at.merged_with = [o for o in link.tracks if o != tid]
                tr.at[t] = at
                for lid in lids:
                    lut[lid] = tid
                voxels = np.flatnonzero(np.isin(on_base.ravel(), lids))
                refs[tid] = Reference(voxels if voxels.size else refs[tid].voxels,
                                      np.mean([cents[lid] for lid in lids], 0))
        for lid in result.new:
            tid = next_id
            next_id += 1
            at = [LesionAtTime(s, "not-yet-seen") for s in range(t)] + [_combine(t, "new", [rows[lid]], "")] + \
                 [LesionAtTime(s, "absent") for s in range(t + 1, n_t)]
            tracks[tid] = Track(tid, "new", at, new_at=t)
            refs[tid] = Reference(np.flatnonzero(on_base.ravel() == lid), cents[lid])
            lut[lid] = tid
        maps.append(_relabel(tp.labels, lut))
        infos.append(TimepointInfo(tp.name, tp.source, tp.days, len(tables[t]), _describe(reg)))
    progress(ProgressEvent("register", 1.0, "follow-ups registered and matched"))
    ordered = [tracks[k] for k in sorted(tracks)]
    for tr in ordered:
        absent_tail = 0
        for at in reversed(tr.at):
            if at.status != "absent":
                break
            absent_tail += 1
        tr.resolved_at = n_t - absent_tail if absent_tail else None
    days = [tp.days for tp in timepoints]
    measures = [{tr.track_id: m for tr in ordered if (m := tr.at[t].measure()) is not None} for t in range(n_t)]
    rano = assess(measures, config.rano, days if all(d is not None for d in days) else None)
    for tr in ordered:
        if tr.track_id in rano.targets:
            tr.role = "target"
    return LongitudinalResult(infos, ordered, rano, maps, regs)


def _relabel(labels: sitk.Image, lut: dict[int, int]) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(labels)
    table = np.zeros(int(arr.max(initial=0)) + 1, np.uint16)
    for lid, tid in lut.items():
        if lid < table.size:
            table[lid] = tid
    out = sitk.GetImageFromArray(table[arr])
    out.CopyInformation(labels)
    return out


def _describe(reg: Registration) -> dict:
    """Rotation (degrees about LPS x, y, z), translation and centre (LPS mm) of a rigid registration."""
    t = reg.transform
    if t.GetName() != "Euler3DTransform":
        return {"type": t.GetName(), "parameters": [round(float(v), 6) for v in t.GetParameters()]}
    euler = sitk.Euler3DTransform(t)
    return {"type": "rigid", "rotation_deg_lps": [round(float(np.degrees(a)), 3) for a in
                                                  (euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ())],
            "translation_mm_lps": [round(float(v), 3) for v in euler.GetTranslation()],
            "centre_mm_lps": [round(float(v), 3) for v in euler.GetCenter()]}
