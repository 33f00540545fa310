"""A comparison from what the user has: the pipeline ``brainmetseg compare`` runs.

Each input is a ``segment`` result folder, a scan (segmented on the way), or a scan with a label
map (``labels``). In order: the request is checked; every time point is read (result folders:
label map, table, run.json, probability map; scans: segmented once, nothing written yet);
whether the time points belong together is checked (:mod:`.consistency`: refused unless
``force`` gives a reason); runs of a model with a candidate stage get their candidates below
the cut back (:mod:`.below_cut`); each follow-up is registered to the baseline; with ``prior``,
every time point is re-made with the others' lesions as a hint (:mod:`.prior`, symmetric: a
candidate-stage run's possible lesions there become lesions, other runs are re-thresholded);
every time point is measured by one rule (:mod:`.measuring`); lesions are tracked and RANO-BM
assessed (:func:`.tracking.compare_timepoints`).

    from BrainMetSegLib.longitudinal.series import CompareRequest, run_comparison
    outcome = run_comparison(CompareRequest(("out/t0", "out/t1"), "out/cmp"))
    outcome.result.rano.timepoints[0].response, outcome.record()
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..image_edge import ImageEdgeConfig
from ..options import (
    EQUIVOCAL_BELOW_LESION_PROBABILITY,
    Device,
    Diameters,
    MaskMethod,
    as_brain_mask,
    as_options,
    check_grid_shifts,
)
from ..progress import ProgressCallback, no_progress
from ..textfiles import read_json_object
from .below_cut import below_cut
from .consistency import BEFORE_THE_SETTING, SourceInfo, check_series, dicom_identity
from .matching import MatchConfig
from .measuring import measure_alike
from .prior import PriorConfig, promote_candidates, symmetric_prior
from .rano import RanoConfig
from .registration import Registration, register_followup
from .sources import (
    first_image,
    from_result_folder,
    from_scan_and_labels,
    is_result_folder,
    scan_name,
)
from .tracking import CompareConfig, LongitudinalResult, TimePoint, compare_timepoints


@dataclass(frozen=True)
class CompareRequest:
    """inputs: baseline first (result folders, scans, or scans with ``labels``); output: folder
    for ``segmentations/<name>/`` of scans segmented on the way; names, days: one per input
    (days since baseline); model, device, brain_mask: for scans segmented on the way; prior,
    prior_factor: re-threshold every time point with the others' lesions (needs probability
    maps); diameters: :class:`~BrainMetSegLib.options.Diameters` ("image": on the CE-T1
    image's edge where it holds, else the probability outline; "outline": the probability
    outline only; :mod:`.measuring`);
    contact_mm, max_distance_mm: matching (:class:`.matching.MatchConfig`); equivocal_below: a new
    lesion of a lower calibrated lesion probability is equivocal (:class:`.rano.RanoConfig`'s
    ``equivocal_below_confidence``; None or 0: off); grid_shifts: test-time grid shifts for
    scans segmented on the way (``segment --grid-shifts``; 1: off); force: a
    reason to compare time points that the consistency checks refuse; overwrite: replace
    earlier outputs."""

    inputs: tuple[str, ...]
    output: str
    labels: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    days: tuple[float, ...] | None = None
    model: str | None = None
    device: Device = Device.AUTO
    brain_mask: MaskMethod | str = MaskMethod.DEEPBET
    prior: bool = False
    prior_factor: float = 0.5
    contact_mm: float = MatchConfig.contact_mm
    max_distance_mm: float = MatchConfig.max_distance_mm
    force: str | None = None
    overwrite: bool = False
    diameters: Diameters | str = Diameters.OUTLINE
    equivocal_below: float | None = EQUIVOCAL_BELOW_LESION_PROBABILITY
    grid_shifts: int = 1

    def __post_init__(self):
        as_options(self, device=(Device, "--device"), diameters=(Diameters, "--diameters"))
        object.__setattr__(self, "grid_shifts", check_grid_shifts(self.grid_shifts))
        object.__setattr__(self, "brain_mask", as_brain_mask(self.brain_mask))


@dataclass
class Outcome:
    """The comparison, its time points (as compared), consistency warnings, the override record
    (``--force``), the prior record and the ``segment`` results of scans segmented on the way."""

    request: CompareRequest
    result: LongitudinalResult
    timepoints: list[TimePoint]
    warnings: list[str] = field(default_factory=list)
    forced: dict | None = None
    prior: dict | None = None
    segmented: dict = field(default_factory=dict)
    measured: dict | None = None

    def record(self) -> dict:
        """longitudinal.json: the request, checks and the result's plain data."""
        r = self.request
        return {"brainmetseg_compare": {
            "inputs": list(r.inputs), "labels": None if r.labels is None else list(r.labels),
            "match": {"contact_mm": r.contact_mm, "max_distance_mm": r.max_distance_mm},
            "equivocal_below_lesion_probability": r.equivocal_below or None,
            "prior": self.prior, "diameters": self.measured, "warnings": self.warnings, "forced": self.forced},
            **self.result.to_dict()}


def check_request(r: CompareRequest) -> list[str]:
    """:class:`InputError` for an unusable request; returns the time points' names."""
    n = len(r.inputs)
    if n < 2:
        raise InputError("compare needs a baseline and at least one follow-up (two or more inputs).")
    for what, values in (("--labels", r.labels), ("--names", r.names), ("--days", r.days)):
        if values is not None and len(values) != n:
            raise InputError(f"{what}: give one value per input ({n}), got {len(values)}.")
    if r.days is not None and not all(math.isfinite(d) for d in r.days):
        raise InputError(f"--days {' '.join(f'{d:g}' for d in r.days)}: every date must be a finite number of days.")
    if r.days is not None and (r.days[0] != 0 or any(b <= a for a, b in zip(r.days, r.days[1:], strict=False))):
        raise InputError("--days: the baseline is day 0 and the dates must increase.")
    if r.prior and r.labels:
        raise InputError("--prior re-thresholds probability maps; label maps given with --labels have none.")
    if not 0 < r.prior_factor <= 1:
        raise InputError(f"--prior-factor {r.prior_factor}: must be in (0, 1].")
    if not 0 <= r.contact_mm <= 10 or not 0 <= r.max_distance_mm < math.inf:
        raise InputError("--contact must be 0-10 mm and --max-distance a finite distance >= 0 mm.")
    if r.equivocal_below is not None and not 0 <= r.equivocal_below <= 1:  # NaN too
        raise InputError(f"--equivocal-below {r.equivocal_below}: a lesion probability 0-1 (0: off).")
    if r.force is not None and not r.force.strip():
        raise InputError("--force needs a reason (recorded with the result).")
    for path in r.inputs + (r.labels or ()):
        if not Path(path).exists():
            raise InputError(f"{path}: not found.")
    names = list(r.names or [scan_name(p) if Path(p).is_file() else Path(p).name for p in r.inputs])
    if len(set(names)) != n:
        names = [f"{k}_{name}" for k, name in enumerate(names)]
    return names


def _read(r: CompareRequest, names: list[str]):
    """Time points (None: to segment), their source records, probability maps and possible
    lesions (rows of ``lesions.json``'s ``possible_lesions``)."""
    timepoints, sources, probabilities, possibles = [], [], [], []
    for k, (path, name) in enumerate(zip(r.inputs, names, strict=True)):
        run, probability, possible = None, None, []
        if r.labels:
            tp, scan = from_scan_and_labels(path, r.labels[k], name), path
        elif is_result_folder(path):
            tp = from_result_folder(path, name)
            run = json.loads((Path(path) / "run.json").read_text(encoding="utf-8"))
            scan = run["inputs"]["t1ce"]["path"]
            _check_asked_grid_shifts(path, run, r.grid_shifts)
            found = first_image(Path(path), "probability")
            probability = None if found is None else sitk.ReadImage(str(found), sitk.sitkFloat32)
            if (Path(path) / "lesions.json").is_file():
                possible = read_json_object(Path(path) / "lesions.json", "lesion table", InputError).get(
                    "possible_lesions") or []
        elif Path(path).is_dir() and any(Path(path).glob("lesion_labels.*")):
            raise InputError(f"{path}: result folder without run.json; give the scan and --labels instead.")
        else:
            tp, scan = None, path
        timepoints.append(tp)
        sources.append(SourceInfo(name, str(scan), run, dicom_identity(scan)))
        probabilities.append(probability)
        possibles.append(possible)
    return timepoints, sources, probabilities, possibles


def _check_asked_grid_shifts(path, run: dict, asked: int) -> None:
    """Refuse a result folder segmented with other grid shifts than an explicit ``--grid-shifts``
    (the option would otherwise hold for scans segmented on the way only, unseen)."""
    made = (run.get("settings") or {}).get("grid_shifts", BEFORE_THE_SETTING["grid_shifts"])
    if asked != 1 and made != asked:
        raise InputError(f"{path}: segmented with --grid-shifts {made}, but --grid-shifts {asked} was asked; "
                         f"segment it again with --grid-shifts {asked}, or compare without the option.")


def _attach_below_cut(timepoints, sources, probabilities, possibles) -> None:
    """The candidates each candidate-stage run scored below its cut (in place; see
    :mod:`.below_cut`). Runs without the stage, or without a probability map, get none."""
    for tp, src, probability, possible in zip(timepoints, sources, probabilities, possibles, strict=True):
        settings = (src.run or {}).get("settings") or {}
        stage = settings.get("candidate_stage")
        if stage and probability is not None and "candidate_threshold" in stage:
            tp.below_cut = below_cut(probability, tp.labels, possible, stage, settings.get("outline_threshold_used"))


def _segment(r: CompareRequest, names, timepoints, sources, probabilities, possibles, progress) -> dict:
    """Segment the scans given without a result (in place); returns index -> pipeline Result."""
    from ..images import read_scalar_volume
    from ..pipeline import SegmentConfig, Segmenter

    todo = [k for k, tp in enumerate(timepoints) if tp is None]
    if not todo:
        return {}
    segmenter = Segmenter(SegmentConfig(device=r.device, brain_mask=r.brain_mask, grid_shifts=r.grid_shifts,
                                        **({"model": r.model} if r.model else {})))
    results = {}
    for k in todo:
        result = segmenter.run(r.inputs[k], progress)
        timepoints[k] = TimePoint(names[k], read_scalar_volume(r.inputs[k], "CE-T1"), result.labels, result.table,
                                  source=str(r.inputs[k]))
        sources[k].run = result.provenance
        probabilities[k] = result.probability
        possibles[k] = result.possible
        results[k] = result
    return results


def _apply_prior(r: CompareRequest, timepoints, sources, probabilities, registrations, segmented) -> dict:
    """Every time point re-made with the others' lesions as a hint (in place): candidate-stage
    runs by promotion (:func:`_promote`), others re-thresholded; the prior record."""
    from ..lesions import lesion_table
    from ..operating_point import OperatingPoint

    missing = [tp.name for tp, p in zip(timepoints, probabilities, strict=True) if p is None]
    if missing:
        raise InputError(f"--prior needs every time point's probability map; {', '.join(missing)} has none "
                         "(segment it again, or compare without --prior).")
    staged = [tp.below_cut is not None for tp in timepoints]
    if any(staged):
        if not all(staged):
            raise InputError("--prior: some time points' lesions were chosen by a candidate stage and others not "
                             "(segment them all with the same model and settings).")
        return _promote(timepoints, probabilities, registrations, segmented)
    try:
        point = OperatingPoint.from_settings(sources[0].run.get("settings") or {}, f"{sources[0].name} run.json")
    except ValueError as exc:
        raise InputError(f"--prior: {exc}") from None
    config = PriorConfig(threshold_factor=r.prior_factor)
    guided = symmetric_prior(probabilities, [tp.labels for tp in timepoints], registrations, point, config)
    record = {"rule": "each time point with the other time points' lesions as prior (symmetric)",
              "threshold_factor": config.threshold_factor, "margin_mm": config.margin_mm,
              "threshold_inside_prior": point.threshold * config.threshold_factor, "operating_point": point.describe()}
    for k, (tp, labels) in enumerate(zip(timepoints, guided, strict=True)):
        tp.labels, tp.table = labels, lesion_table(labels, probabilities[k])
        if k in segmented:
            segmented[k].labels, segmented[k].table = tp.labels, tp.table
            segmented[k].provenance["prior"] = record
    return record


def _promote(timepoints, probabilities, registrations, segmented) -> dict:
    """The candidate-stage prior (:func:`.prior.promote_candidates`), in place; its record."""
    from ..lesions import lesion_table

    margin = PriorConfig().margin_mm
    labels, promoted = promote_candidates([tp.labels for tp in timepoints], [tp.below_cut for tp in timepoints],
                                          registrations, margin)
    cut = timepoints[0].below_cut.sensitive_cut
    record = {"rule": "candidate stage: on every time point, a candidate scored below the cut but at or above the "
                      "sensitive cut within margin_mm of another time point's lesion is a lesion (symmetric)",
              "sensitive_cut": cut, "margin_mm": margin, "promoted": {}}
    for k, (tp, lab, ids) in enumerate(zip(timepoints, labels, promoted, strict=True)):
        old = {int(row["lesion_id"]): row for row in tp.table or []}
        table = lesion_table(lab, probabilities[k])
        for row in table:
            lid = int(row["lesion_id"])
            if lid in old:
                row["lesion_probability"] = old[lid].get("lesion_probability", row["lesion_probability"])
            elif lid in ids:  # promoted: lesion id -> candidate id
                row["lesion_probability"] = float(tp.below_cut.probability[ids[lid] - 1])
                row["promoted"] = True
        record["promoted"][tp.name] = [{"lesion_id": int(row["lesion_id"]), "lesion_probability":
                                        round(row["lesion_probability"], 4), "axial_longest_diameter_mm":
                                        round(row["axial_longest_diameter_mm"], 2)} for row in table
                                       if row.get("promoted")]
        if k in segmented:  # its outputs: promoted lesions in the label map, no longer listed as possible
            listed = {int(tp.below_cut.row[c - 1]) for c in ids.values()}
            seg = segmented[k]
            seg.labels, seg.table, seg.provenance["prior"] = lab, table, record
            seg.possible = [row for n, row in enumerate(seg.possible) if n not in listed]
            for n, row in enumerate(seg.possible, 1):  # ids of their own, 1 = most probable
                row["lesion_id"] = n
            seg.provenance["settings"]["candidate_stage"].update(lesions=len(table), possible=len(seg.possible))
        tp.labels, tp.table, tp.below_cut = lab, table, tp.below_cut.without(list(ids.values()))
    return record


def run_comparison(r: CompareRequest, progress: ProgressCallback = no_progress,
                   registrations: list[Registration | None] | None = None) -> Outcome:
    """Check, read (segmenting scans on the way), check consistency, register, apply the prior,
    compare. Nothing is written here (see :func:`.outputs.write_comparison`). ``registrations``:
    follow-up -> baseline registrations already known (e.g. from an earlier comparison of the
    same scans; entry 0 None); estimated here when None."""
    names = check_request(r)
    timepoints, sources, probabilities, possibles = _read(r, names)
    early = check_series(sources)  # identity and run records: before any segmentation
    early.enforce(r.force)
    segmented = _segment(r, names, timepoints, sources, probabilities, possibles, progress)
    findings = check_series(sources, [tp.image for tp in timepoints])
    forced = findings.enforce(r.force)
    _attach_below_cut(timepoints, sources, probabilities, possibles)
    for k, tp in enumerate(timepoints):
        tp.days = None if r.days is None else r.days[k]
    if registrations is None:
        registrations = [None] + [register_followup(timepoints[0].image, tp.image, tp.source or tp.name)
                                  for tp in timepoints[1:]]
    prior = _apply_prior(r, timepoints, sources, probabilities, registrations, segmented) if r.prior else None
    measured = measure_alike(timepoints, [src.run for src in sources], probabilities,
                             ImageEdgeConfig() if r.diameters == Diameters.IMAGE else None)
    config = CompareConfig(match=MatchConfig(contact_mm=r.contact_mm, max_distance_mm=r.max_distance_mm),
                           rano=RanoConfig(equivocal_below_confidence=r.equivocal_below or None))
    result = compare_timepoints(timepoints, config, registrations, progress=progress)
    return Outcome(r, result, timepoints, findings.warnings, forced, prior, segmented, measured)
