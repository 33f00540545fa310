"""Follow-up scans of a synthetic case: the same patient, moved, with lesions that changed.

The baseline is exactly :func:`~BrainMetSegLib.synth.make_case` of the seed. Each follow-up
re-renders the same anatomy and lesion plan with every lesion's diameter scaled (growth,
shrinkage, disappearance: scale 0) and possibly new lesions added; the head is then moved
rigidly (rotation about the grid centre + shift, as in a new scanner session) before the
acquisition (fresh noise and bias field). Lesion shapes, textures and centres are kept, so a
lesion is recognisably the same one.

Ground truth per follow-up: the correspondence (follow-up lesion id -> baseline lesion id or
new), the baseline lesions that resolved, the rigid transform (baseline -> follow-up physical
points, LPS mm) and the true RANO-BM radiographic response, computed by
:mod:`BrainMetSegLib.longitudinal.rano` from the ground-truth label maps and correspondence.

Scenarios per follow-up: "progression" (lesions grow 20-60 %, 1-2 new lesions), "response"
(shrink to 30-70 %, a quarter disappear), "stable" (+-10 %), "complete" (all disappear),
"mixed" (each lesion grows, shrinks or disappears; maybe a new one); "auto" draws one of these.
"repeat" (never drawn by "auto") is a rescan with the baseline's protocol: every lesion exactly as
before, no new one, the same point spread, acquisition grid and noise level; only the head's
position, the bias field, the noise and the scanner's intensity scale new. With no movement
(``max_rotation_deg = max_shift_mm = 0``) a test-retest pair, for the measurements' repeatability.
Other scenarios draw each follow-up's acquisition afresh (another protocol, e.g. thick slices
interpolated onto the same grid, in a quarter of scans).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..options import FOLLOWUP_INTERPOLATIONS, FOLLOWUP_MOTION, FOLLOWUP_SCENARIOS
from . import config as C
from .case import SynthCase, plan_case, render_case
from .deform import _rotation
from .lesions import LesionSpec, plan_lesions

SCENARIOS = FOLLOWUP_SCENARIOS
SCENARIO_PROBABILITIES = {"progression": 0.3, "response": 0.3, "stable": 0.15, "complete": 0.05, "mixed": 0.2}
#: A lesion scaled below this diameter (mm) is gone (a sub-voxel lesion would still paint a voxel).
MIN_DIAMETER_MM = 1.5


@dataclass(frozen=True)
class FollowupConfig:
    """scenario: one of :data:`SCENARIOS` or "auto" (drawn per follow-up);
    max_rotation_deg: head rotation drawn in +-this about each axis (degrees);
    max_shift_mm: head shift drawn in +-this along each axis (mm);
    new_diameter_mm: (min, max) diameter of new lesions (mm);
    interpolation: how the painted head is moved onto the grid before the acquisition: "linear"
    (the default, as every follow-up dataset so far: it blurs the moved image's edges, more at
    half-voxel shifts, which the baseline never has) or "cubic" (a spline, nearly no blur)."""

    scenario: str = "auto"
    max_rotation_deg: float = FOLLOWUP_MOTION[0]
    max_shift_mm: float = FOLLOWUP_MOTION[1]
    new_diameter_mm: tuple[float, float] = (3.0, 12.0)
    interpolation: str = FOLLOWUP_INTERPOLATIONS[0]

    def __post_init__(self) -> None:
        from ..errors import InputError

        if self.scenario not in (*SCENARIOS, "auto"):
            raise InputError(f"follow-up scenario {self.scenario!r}: use auto or one of {', '.join(SCENARIOS)}.")
        if not 0 <= self.max_rotation_deg <= 30 or not 0 <= self.max_shift_mm <= 50:
            raise InputError("follow-up movement: rotation must be 0-30 degrees and shift 0-50 mm.")
        if self.interpolation not in FOLLOWUP_INTERPOLATIONS:
            raise InputError(f"follow-up interpolation {self.interpolation!r}: use "
                             f"{' or '.join(FOLLOWUP_INTERPOLATIONS)}.")


@dataclass
class Followup:
    """One synthetic follow-up and its truth.

    case: the scan (image, labels with follow-up lesion ids, lesion records);
    correspondence: follow-up lesion id -> baseline lesion id, or None for a new lesion;
    resolved: baseline lesion ids with no voxel on this scan;
    track_of: follow-up lesion id -> truth track id (baseline id, or a new id stable across follow-ups);
    transform: baseline -> follow-up physical points (LPS mm), an ``sitk.AffineTransform``;
    scenario, scales: what was drawn (scale per baseline lesion id; 0 = gone).
    """

    case: SynthCase
    correspondence: dict[int, int | None]
    resolved: list[int]
    track_of: dict[int, int]
    transform: sitk.Transform
    scenario: str
    scales: dict[int, float] = field(default_factory=dict)
    movement: dict = field(default_factory=dict)

    def truth(self) -> dict:
        return {"correspondence": {str(k): v for k, v in self.correspondence.items()}, "resolved": self.resolved,
                "track_of": {str(k): v for k, v in self.track_of.items()}, "scenario": self.scenario,
                "diameter_scale": {str(k): round(v, 4) for k, v in self.scales.items()},
                "movement": self.movement}


def followup_seed(seed: int, k: int) -> np.random.SeedSequence:
    """Generator seed of follow-up ``k`` (1, 2, ...) of a case seed: independent of the baseline's draws."""
    return np.random.SeedSequence([int(seed), 0xF0110, int(k)])


def _scales(rng: np.random.Generator, scenario: str, n: int) -> np.ndarray:
    if scenario == "progression":
        return rng.uniform(1.2, 1.6, n)
    if scenario == "response":
        return np.where(rng.random(n) < 0.25, 0.0, rng.uniform(0.3, 0.7, n))
    if scenario == "stable":
        return rng.uniform(0.9, 1.1, n)
    if scenario == "repeat":
        return np.ones(n)
    if scenario == "complete":
        return np.zeros(n)
    kind = rng.choice(3, n, p=[0.4, 0.4, 0.2])  # mixed: grow / shrink / disappear
    return np.where(kind == 0, rng.uniform(1.2, 1.7, n), np.where(kind == 1, rng.uniform(0.4, 0.8, n), 0.0))


def _rigid(rng: np.random.Generator, fcfg: FollowupConfig) -> tuple[np.ndarray, np.ndarray]:
    rot = _rotation(np.deg2rad(rng.uniform(-fcfg.max_rotation_deg, fcfg.max_rotation_deg, 3)))
    return rot, rng.uniform(-fcfg.max_shift_mm, fcfg.max_shift_mm, 3)


def _mover(grid, rot_ras: np.ndarray, shift_ras: np.ndarray, centre_ras: np.ndarray, cubic: bool = False):
    """Arrays (z, y, x) of a head moved by p -> rot (p - centre) + centre + shift (RAS mm); float
    arrays linearly interpolated, or by a cubic spline (``cubic``), label arrays nearest."""
    sp = np.asarray(grid.spacing, float)
    a = np.zeros((3, 3))  # (z, y, x) index -> RAS mm
    a[0, 2], a[1, 1], a[2, 0] = sp[0], sp[1], sp[2]
    a_inv = np.linalg.inv(a)
    o = np.asarray(grid.origin_ras, float)
    rt = rot_ras.T
    matrix = a_inv @ rt @ a
    offset = a_inv @ (rt @ (o - centre_ras - shift_ras) + centre_ras - o)

    def move(arrays: dict) -> dict:
        out = {}
        for key, arr in arrays.items():
            if arr is None:
                out[key] = None
                continue
            order = (3 if cubic else 1) if arr.dtype.kind == "f" else 0
            src = arr.astype(np.uint8) if arr.dtype == bool else arr
            moved = ndimage.affine_transform(src, matrix, offset, order=order, mode="constant", cval=0,
                                             prefilter=order > 1)
            if order > 1:  # a spline overshoots at edges: no negative intensities
                np.maximum(moved, 0, out=moved)
            out[key] = moved.astype(bool) if arr.dtype == bool else moved.astype(arr.dtype)
        return out

    return move


def _transform_lps(rot_ras: np.ndarray, shift_ras: np.ndarray, centre_ras: np.ndarray) -> sitk.AffineTransform:
    """The movement as an ITK transform on LPS points (baseline -> follow-up)."""
    f = np.diag([-1.0, -1.0, 1.0])
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple((f @ rot_ras @ f).ravel()))
    t.SetCenter(tuple(float(v) for v in f @ centre_ras))
    t.SetTranslation(tuple(float(v) for v in f @ shift_ras))
    return t


def _avoid_existing(plan, specs: list[LesionSpec], margin_mm: float = 4.0) -> np.ndarray:
    """Confounders plus a margin around every planned lesion (new lesions must not touch old ones)."""
    grid = plan.anat.grid
    avoid = plan.masks["vessels"] | plan.masks["dura"] | plan.masks["choroid"]
    xr, yr, zr = grid.ras_axes()
    for s in specs:
        r = s.diameter_mm / 2 * 1.6 + margin_mm
        c = s.centre_ras
        box = [np.flatnonzero(np.abs(ax - cc) <= r) for ax, cc in zip((zr, yr, xr), c[::-1], strict=True)]
        if any(b.size == 0 for b in box):
            continue
        zz, yy, xx = np.ix_(*box)
        d2 = (xr[xx] - c[0]) ** 2 + (yr[yy] - c[1]) ** 2 + (zr[zz] - c[2]) ** 2
        avoid[zz, yy, xx] |= d2 <= r * r
    return avoid


def make_series(seed: int, config: C.SynthConfig, n_followups: int,
                fconfig: FollowupConfig = FollowupConfig()) -> tuple[SynthCase, list[Followup]]:
    """The baseline (identical to ``make_case(seed, config)``) and ``n_followups`` follow-ups.

    Changes accumulate: follow-up k scales follow-up k-1's lesions; a gone lesion stays gone;
    new lesions of follow-up k are carried into later follow-ups. Each follow-up has its own
    head movement relative to the baseline.
    """
    plan = plan_case(seed, config)
    baseline = render_case(plan, plan.specs, plan.rng, config)
    base_id = {spec_i: rec_i + 1 for rec_i, spec_i in enumerate(baseline.spec_index)}
    # Current lesions: (truth track id, spec); baseline lesions with no voxel are not tracked.
    current = [(base_id[i], s) for i, s in enumerate(plan.specs)
               if baseline.lesions[base_id[i] - 1]["voxels"] > 0]
    next_track = len(baseline.lesions) + 1
    followups = []
    grid = plan.anat.grid
    centre = grid.origin_ras + (np.array(grid.shape[::-1]) - 1) * np.asarray(grid.spacing) / 2
    for k in range(1, n_followups + 1):
        rng = np.random.default_rng(followup_seed(seed, k))
        scenario = fconfig.scenario
        if scenario == "auto":
            names = list(SCENARIO_PROBABILITIES)
            scenario = names[rng.choice(len(names), p=list(SCENARIO_PROBABILITIES.values()))]
        factors = _scales(rng, scenario, len(current))
        scales: dict[int, float] = {}
        kept: list[tuple[int, LesionSpec]] = []
        for (tid, spec), f in zip(current, factors, strict=True):
            d = spec.diameter_mm * float(f)
            scales[tid] = float(f) if d >= MIN_DIAMETER_MM else 0.0
            if d >= MIN_DIAMETER_MM:
                kept.append((tid, replace(spec, diameter_mm=d)))
        n_new = 0
        if scenario == "progression":
            n_new = int(rng.integers(1, 3))
        elif scenario == "mixed":
            n_new = int(rng.random() < 0.5)
        if n_new:
            avoid = _avoid_existing(plan, [s for _, s in kept] + [s for _, s in current])
            new_specs = plan_lesions(rng, plan.anat, n_new, fconfig.new_diameter_mm, tuple(config.patterns), avoid)
            for s in new_specs:
                kept.append((next_track, s))
                next_track += 1
        rot, shift = _rigid(rng, fconfig)
        specs = [s for _, s in kept]
        protocol = baseline.info.get("acquisition") if scenario == "repeat" else None
        case = render_case(plan, specs, rng, config, move=_mover(plan.anat.grid, rot, shift, centre,
                                                                       fconfig.interpolation == "cubic"),
                           protocol=protocol)
        present = {rec["id"]: kept[spec_i][0] for rec, spec_i in zip(case.lesions, case.spec_index, strict=True)
                   if rec["voxels"] > 0}
        base_ids = {rec["id"] for rec in baseline.lesions if rec["voxels"] > 0}
        correspondence = {fid: (tid if tid in base_ids else None) for fid, tid in present.items()}
        resolved = sorted(base_ids - set(present.values()))
        case.lesions = [rec for rec in case.lesions if rec["voxels"] > 0]
        case.info["followup"] = {"index": k, "scenario": scenario}
        movement = {"rotation_deg_ras": [round(float(v), 4) for v in np.degrees(_euler(rot))],
                    "shift_mm_ras": [round(float(v), 4) for v in shift],
                    "centre_ras_mm": [round(float(v), 4) for v in centre]}
        followups.append(Followup(case, correspondence, resolved, present, _transform_lps(rot, shift, centre),
                                  scenario, scales, movement))
        current = kept
    return baseline, followups


def _euler(rot: np.ndarray) -> np.ndarray:
    """Angles (x, y, z, radians) of ``rot = Rz @ Ry @ Rx``."""
    return np.array([np.arctan2(rot[2, 1], rot[2, 2]), -np.arcsin(np.clip(rot[2, 0], -1, 1)),
                     np.arctan2(rot[1, 0], rot[0, 0])])


def true_response(baseline: SynthCase, followups: list[Followup], rano_config=None):
    """The RANO-BM assessment of the series from ground truth: the true label maps measured with
    the library's lesion table, lesions identified by the true correspondence."""
    from ..lesions import lesion_table
    from ..longitudinal.rano import Measure, RanoConfig, assess

    def measures(labels: sitk.Image, track_of: dict[int, int]) -> dict[int, Measure]:
        out = {}
        for row in lesion_table(labels):
            tid = track_of.get(int(row["lesion_id"]))
            if tid is not None:
                out[tid] = Measure(row["axial_longest_diameter_mm"], row["axial_perpendicular_diameter_mm"],
                                   row["axial_slices"], row["volume_mm3"])
        return out

    base = measures(baseline.labels, {rec["id"]: rec["id"] for rec in baseline.lesions if rec["voxels"] > 0})
    series = [base] + [measures(f.case.labels, f.track_of) for f in followups]
    return assess(series, rano_config or RanoConfig())


def followup_paths(outdir, cid: str, k: int) -> dict:
    from pathlib import Path

    folder = Path(outdir) / "followups"
    return {"image": folder / f"{cid}_fu{k}_0000.nii.gz", "instances": folder / f"{cid}_fu{k}_instances.nii.gz",
            "truth": folder / f"{cid}_fu{k}.json"}


def write_followups(baseline: SynthCase, followups: list[Followup], outdir, cid: str,
                    overwrite: bool = False, provenance: dict | None = None, dicom: bool = False) -> list[dict]:
    """Write each follow-up's image, instance labels and truth JSON (correspondence, resolved
    lesions, movement, the transform, the true RANO-BM response of the series); ``dicom`` also
    writes each image as a DICOM series (the baseline's patient, a study per follow-up)."""
    import json

    from ..staging import write_image, write_text

    assessment = true_response(baseline, followups)
    written = []
    for k, (fu, resp) in enumerate(zip(followups, assessment.timepoints, strict=True), start=1):
        paths = followup_paths(outdir, cid, k)
        write_image(fu.case.image, paths["image"], overwrite=overwrite)
        write_image(fu.case.labels, paths["instances"], overwrite=overwrite)
        t = fu.transform
        doc = {"case": f"{cid}_fu{k}", "baseline": cid, "followup": k, "synthetic": True,
               "lesions": fu.case.lesions, "truth": fu.truth(),
               "transform_baseline_to_followup_lps": {"matrix": list(t.GetMatrix()), "centre": list(t.GetCenter()),
                                                      "translation": list(t.GetTranslation())},
               "true_rano_bm": {"targets": assessment.targets, "nontargets": assessment.nontargets,
                                **resp.to_dict(), "note": assessment.note},
               "info": fu.case.info, **(provenance or {})}
        write_text(json.dumps(doc, indent=2, default=float) + "\n", paths["truth"], overwrite=overwrite)
        if dicom:
            from .dicom_writer import phantom_identity, series_folder, write_dicom_series

            paths["dicom"] = write_dicom_series(fu.case.image, series_folder(outdir, f"{cid}_fu{k}"),
                                                phantom_identity(cid, provenance, k), overwrite=overwrite)
        written.append(paths)
    return written
