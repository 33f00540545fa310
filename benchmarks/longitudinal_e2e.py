"""End to end follow-up benchmark: synthetic patients, segmented by a model, compared, scored.

1. ``brainmetseg synth -n N --seed S --followups 2`` writes N synthetic patients with two
   follow-ups each and their true RANO-BM radiographic responses (from the true label maps).
2. Every scan (baseline and follow-ups) is segmented once by the model, as ``brainmetseg
   segment`` does (result folders with run.json and the probability map, kept in --cache so an
   interrupted run resumes).
3. Each patient's series is compared (``BrainMetSegLib.longitudinal.series.run_comparison``,
   what ``brainmetseg compare`` runs) without and with the prior (symmetric: with a candidate
   stage, possible lesions where another scan has a lesion become lesions; without one, every
   scan re-thresholded with the other scans' lesions as a hint), and each follow-up's response
   is scored against the truth: a confusion matrix, the count of PDs caused by a fragment of a
   tracked lesion (and, apart, by a true lesion the model missed on the earlier scans), and
   the follow-up / baseline diameter ratio of stable lesions (found as one piece on both scans,
   baseline >= 5 mm), divided by the true ratio: that of the true label maps' measurements
   (lesions within +-10 % of 1 by it; the figure reported since the benchmark began), the
   diameter scale the synth drew, and the lesions' analytic diameters.
4. Two truths, both reported: the true label maps (voxelised: their diameters read 3-9 % long,
   more for small lesions) and the lesions' analytic shapes (the series synthesised again from
   its recorded seed, each lesion's shape cut by the scan's axial slices:
   :mod:`BrainMetSegLib.synth.analytic`); responses, stable ratios and each scan's diameters
   by size against each.

    nice -n 5 python benchmarks/longitudinal_e2e.py -n 15 --seed 7300 --cache /tmp/e2e
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from BrainMetSegLib.longitudinal.rano import CATEGORIES as RESPONSES
from BrainMetSegLib.options import FOLLOWUP_SCENARIOS, GRID_SHIFTS
from BrainMetSegLib.precision import cpu_features


def case_ids(phantoms: Path) -> list[str]:
    return sorted(p.name[: -len("_0000.nii.gz")] for p in (phantoms / "imagesTr").glob("*_0000.nii.gz"))


def series_images(phantoms: Path, cid: str, followups: int) -> list[Path]:
    return [phantoms / "imagesTr" / f"{cid}_0000.nii.gz"] + [
        phantoms / "followups" / f"{cid}_fu{k}_0000.nii.gz" for k in range(1, followups + 1)]


def prepare(args) -> list[str]:
    """Synthesise the patients (once) and segment every scan not yet segmented into the cache."""
    phantoms = Path(args.cache) / "phantoms"
    if not (phantoms / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "BrainMetSegLib", "synth", "-n", str(args.cases), "-o", str(phantoms),
                        "--seed", str(args.seed), "--followups", str(args.followups), "--progress", "none",
                        *synth_followup_options(args)], check=True)
    _check_cached_followups(phantoms, args)
    from BrainMetSegLib.options import Mirroring
    from BrainMetSegLib.outputs import write_result
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    segmenter = None
    cids = case_ids(phantoms)[: args.cases]
    for cid in cids:
        for k, image in enumerate(series_images(phantoms, cid, args.followups)):
            folder = Path(args.cache) / "seg" / f"{cid}_t{k}"
            if (folder / "run.json").is_file():
                _check_cached_inference(folder / "run.json", args)
                continue
            if segmenter is None:
                segmenter = Segmenter(SegmentConfig(device="cpu", outline_threshold=args.outline_threshold,
                                                    mirror=Mirroring(args.mirror), grid_shifts=args.grid_shifts,
                                                    **({"model": args.model} if args.model else {})))
            t0 = time.perf_counter()
            result = segmenter.run(str(image))
            write_result(result, folder, ".nii.gz")
            print(f"segmented {image.name}: {result.n_lesions} lesion(s), {time.perf_counter() - t0:.0f} s",
                  flush=True)
    return cids


def synth_followup_options(args) -> list[str]:
    """synth's follow-up options this run asks for (none: synth's defaults)."""
    out = ["--followup-scenario", args.scenario] if args.scenario != "auto" else []
    out += ["--followup-interpolation", args.interpolation] if args.interpolation != "linear" else []
    return out + (["--followup-motion", *map(str, args.motion)] if args.motion else [])


def _check_cached_followups(phantoms: Path, args) -> None:
    """Refuse phantoms synthesised with other follow-up options than asked (they would be scored as these)."""
    from BrainMetSegLib.options import FOLLOWUP_MOTION

    first = sorted((phantoms / "followups").glob("*_fu1.json"))[:1]
    if not first:
        return
    made = json.loads(first[0].read_text()).get("followup_options") or {}
    asked = {"scenario": args.scenario, "max_rotation_deg": float((args.motion or FOLLOWUP_MOTION)[0]),
             "max_shift_mm": float((args.motion or FOLLOWUP_MOTION)[1]), "interpolation": args.interpolation}
    made = {"interpolation": "linear", **made}  # phantoms made before the option: linear
    if any(made.get(k) != v for k, v in asked.items()):
        raise SystemExit(f"{first[0]}: phantoms made with follow-up options {made}, this run asks {asked}; "
                         "use another --cache")


def _check_cached_inference(run_json: Path, args) -> None:
    """Refuse a cache segmented with another test-time mirroring or grid shifts than asked (it
    would be scored as this one)."""
    run = json.loads(run_json.read_text()).get("inference_run") or {}
    mirror = run.get("mirror", {}).get("mode", "none")
    if mirror != args.mirror:
        raise SystemExit(f"{run_json}: segmented with --mirror {mirror}, this run asks {args.mirror}; "
                         "use another --cache")
    shifts = run.get("grid_shifts", {}).get("grids", 1)
    if shifts != args.grid_shifts:
        raise SystemExit(f"{run_json}: segmented with --grid-shifts {shifts}, this run asks {args.grid_shifts}; "
                         "use another --cache")


def _measures(labels, track_of: dict[int, int]) -> dict:
    from BrainMetSegLib.lesions import lesion_table
    from BrainMetSegLib.longitudinal.rano import Measure

    return {track_of[int(r["lesion_id"])]: Measure(r["axial_longest_diameter_mm"], r["axial_perpendicular_diameter_mm"],
                                                   r["axial_slices"], r["volume_mm3"])
            for r in lesion_table(labels) if int(r["lesion_id"]) in track_of}


def truth_of(phantoms: Path, cid: str, followups: int) -> dict:
    """The true label maps, the truth records and the true responses by this library's rules now
    (the truth JSON's response was computed by the rules at synthesis time; both are kept), and
    the same from the lesions' analytic shapes (:func:`analytic_measures`)."""
    import SimpleITK as sitk

    from BrainMetSegLib.longitudinal.rano import assess

    base = sitk.ReadImage(str(phantoms / "instancesTr" / f"{cid}.nii.gz"))
    ids = {int(v) for v in np.unique(sitk.GetArrayViewFromImage(base))} - {0}
    docs = [json.loads((phantoms / "followups" / f"{cid}_fu{k}.json").read_text()) for k in range(1, followups + 1)]
    maps = [base] + [sitk.ReadImage(str(phantoms / "followups" / f"{cid}_fu{k}_instances.nii.gz"))
                     for k in range(1, followups + 1)]
    track_of = [{i: i for i in ids}] + [{int(a): int(b) for a, b in d["truth"]["track_of"].items()} for d in docs]
    series = [_measures(m, t) for m, t in zip(maps, track_of, strict=True)]
    analytic = analytic_measures(phantoms, cid, docs, track_of, series)
    return {"maps": maps, "track_of": track_of, "measures": series, "docs": docs, "analytic": analytic,
            "responses": [r.response for r in assess(series).timepoints],
            "responses_analytic": [r.response for r in assess(analytic).timepoints],
            "responses_at_synthesis": [d["true_rano_bm"]["response"] for d in docs]}


def analytic_measures(phantoms: Path, cid: str, docs: list[dict], track_of: list[dict[int, int]],
                      label_measures: list[dict]) -> list[dict]:
    """Per time point, track id -> Measure of each true lesion from its analytic shape: the
    series synthesised again from the recorded case seed and options (``make_series``, exact:
    the lesion records' voxel counts are checked against the written ones), each lesion's
    analytic axial diameters on that scan (:func:`BrainMetSegLib.synth.analytic.analytic_axial_size`);
    volumes and the set of lesions are the label maps'."""
    from BrainMetSegLib.longitudinal.rano import Measure
    from BrainMetSegLib.synth.analytic import analytic_axial_size
    from BrainMetSegLib.synth.config import SynthConfig
    from BrainMetSegLib.synth.followup import FollowupConfig, make_series

    def tuples(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    first = docs[0]
    baseline, series = make_series(int(first["case_seed"]), SynthConfig(**tuples(first["options"])), len(docs),
                                   FollowupConfig(**tuples(first["followup_options"])))
    written = [json.loads((phantoms / "lesionsTr" / f"{cid}.json").read_text())["lesions"]] + [
        d["lesions"] for d in docs]
    cases = [baseline] + [f.case for f in series]
    for k, (case, records) in enumerate(zip(cases, written, strict=True)):
        drawn = {r["id"]: r["voxels"] for r in case.lesions if r["voxels"] > 0}
        if drawn != {r["id"]: r["voxels"] for r in records if r["voxels"] > 0}:
            raise SystemExit(f"{cid} scan {k}: synthesised again, its lesions differ from the written ones "
                             "(another synth version?): no analytic truth")
    out = []
    for k, case in enumerate(cases):
        movement = None if k == 0 else series[k - 1].transform
        measures = {}
        for lesion_id, track in track_of[k].items():
            size = analytic_axial_size(case.spec_of(lesion_id), case.labels, movement)
            volume = label_measures[k][track].volume_mm3 if track in label_measures[k] else 0.0
            measures[track] = Measure(size.longest_mm, size.perpendicular_mm, size.slices, volume)
        out.append(measures)
    return out


def _true_track_at(pred_map, k: int, lesion_ids: list[int], truth: dict) -> set[int]:
    """True track ids overlapped by a predicted lesion (its ids on scan k)."""
    import SimpleITK as sitk

    p, t = sitk.GetArrayViewFromImage(pred_map), sitk.GetArrayViewFromImage(truth["maps"][k])
    hit = set(np.unique(t[np.isin(p, lesion_ids) & (t > 0)]).tolist())
    return {truth["track_of"][k][int(h)] for h in hit if int(h) in truth["track_of"][k]}


def fragment_pds(outcome, truth: dict) -> tuple[list[int], list[int]]:
    """Follow-ups whose PD rests only on "new" lesions that lie on a true lesion already there:
    (fragments: every such true lesion was found by the model on an earlier scan, i.e. a piece of
    a tracked lesion called new; missed before: at least one was on an earlier scan but the model
    had not found it there)."""
    result, fragments, missed = outcome.result, [], []
    for r in result.rano.timepoints:
        if r.response != "PD" or "PD" in (r.target_response, r.nontarget_response) or not r.new_lesions:
            continue
        seen_before = set().union(*(truth["measures"][s] for s in range(r.index)))
        found_before = set().union(*(_true_track_at(outcome.timepoints[s].labels, s,
                                                    [int(row["lesion_id"]) for row in outcome.timepoints[s].table],
                                                    truth) for s in range(r.index)))
        hits = []
        for tid in r.new_lesions:
            at = next(tr for tr in result.tracks if tr.track_id == tid).at[r.index]
            hits.append(_true_track_at(outcome.timepoints[r.index].labels, r.index, at.lesion_ids, truth))
        if all(hit and hit <= seen_before for hit in hits):
            (fragments if all(hit <= found_before for hit in hits) else missed).append(r.index)
    return fragments, missed


def drawn_scale(truth: dict, track: int, k: int) -> float | None:
    """The diameter scale the synth drew for a baseline lesion from baseline to follow-up k: the
    product of each follow-up's recorded ``diameter_scale`` (each relative to the one before).
    The lesion's shape is scaled exactly; its axial diameter on the moved, re-acquired head
    follows the scale to within +-1 % (rotation, slice positions: checked on the analytic shapes
    of seeds 7300 / 7700, SD 0.007), so it is the true ratio without the true label maps' voxels."""
    scale = 1.0
    for doc in truth["docs"][:k]:
        step = doc["truth"]["diameter_scale"].get(str(track))
        if step is None:
            return None
        scale *= step
    return scale


def stable_pairs(outcome, truth: dict, tolerance: float = 0.10, min_mm: float = 5.0,
                 against: str = "labels") -> list[tuple]:
    """``(track, k, true_ratio, true_id)`` of the stable lesions: each tracked from the baseline, seen as
    one piece there and present at follow-up ``k``, baseline >= ``min_mm``, its true follow-up /
    baseline longest axial diameter ratio within +-``tolerance`` of 1. ``against``: where the true
    ratio comes from: "labels": the true label maps' measurements (the figure reported since the
    benchmark began); "scale": the scale the synth drew (:func:`drawn_scale`); "analytic": the
    lesion's analytic axial diameters on the two scans (:func:`analytic_measures`; free of the true
    label maps' own voxel quantisation, like "scale", and of the shape's rotation and the slice
    positions). ``true_id``: the true lesion the track is at baseline."""
    pairs = []
    for tr in outcome.result.tracks:
        if tr.new_at is not None:
            continue
        hit0 = _true_track_at(outcome.timepoints[0].labels, 0, tr.at[0].lesion_ids, truth)
        if len(hit0) != 1 or tr.at[0].longest_mm < min_mm:
            continue
        (true_id,) = hit0
        for k in range(1, len(tr.at)):
            at, t0, tk = tr.at[k], truth["measures"][0].get(true_id), truth["measures"][k].get(true_id)
            if at.status != "present" or t0 is None or tk is None:
                continue
            if against == "labels":
                true_ratio = tk.longest_mm / t0.longest_mm
            elif against == "analytic":
                a0, ak = truth["analytic"][0][true_id], truth["analytic"][k][true_id]
                true_ratio = ak.longest_mm / a0.longest_mm if a0.longest_mm > 0 else None
            else:
                true_ratio = drawn_scale(truth, true_id, k)
            if true_ratio is not None and abs(true_ratio - 1) <= tolerance:
                pairs.append((tr, k, true_ratio, true_id))
    return pairs


def stable_ratios(pairs: list[tuple]) -> list[float]:
    """Measured follow-up / baseline longest axial diameter of :func:`stable_pairs`' pairs, each
    divided by its true ratio, rounded for the JSON."""
    return [round((tr.at[k].longest_mm / tr.at[0].longest_mm) / true_ratio, 4) for tr, k, true_ratio, _ in pairs]


def single_scan_diameters(outcome, truth: dict) -> list[list[float]]:
    """Per scan, each true lesion found as exactly one model lesion that covers no other true
    lesion: [analytic longest axial diameter, measured, true label map's] (mm), for the
    diameter accuracy by size."""
    out = []
    for k, tp in enumerate(outcome.timepoints):
        pieces: dict[int, list[int]] = {}
        rows = {int(row["lesion_id"]): row for row in tp.table}
        for lesion_id in rows:
            hit = _true_track_at(tp.labels, k, [lesion_id], truth)
            for track in hit:
                pieces.setdefault(track, []).append(lesion_id if len(hit) == 1 else -1)
        for track, found in pieces.items():
            if len(found) != 1 or found[0] < 0 or track not in truth["analytic"][k]:
                continue
            out.append([round(truth["analytic"][k][track].longest_mm, 3),
                        round(float(rows[found[0]]["axial_longest_diameter_mm"]), 3),
                        round(truth["measures"][k][track].longest_mm, 3)])
    return out


def _registrations_folder(args) -> Path:
    return Path(args.registrations or Path(args.scores or Path(args.cache) / "scores") / "registrations")


def _saved_registrations(args, cid: str) -> list | None:
    """Follow-up -> baseline registrations of a patient estimated by an earlier run over the same
    cache (they depend only on the scans), or None."""
    import SimpleITK as sitk

    from BrainMetSegLib.longitudinal.registration import Registration

    paths = [_registrations_folder(args) / f"{cid}_t{k}.tfm" for k in range(1, args.followups + 1)]
    if not all(p.is_file() for p in paths):
        return None
    return [None] + [Registration(sitk.ReadTransform(str(p))) for p in paths]


def _save_registrations(args, cid: str, registrations: list) -> None:
    import SimpleITK as sitk

    folder = _registrations_folder(args)
    folder.mkdir(parents=True, exist_ok=True)
    for k, reg in enumerate(registrations[1:], start=1):
        path = folder / f"{cid}_t{k}.tfm"
        if reg is not None and not path.is_file():
            sitk.WriteTransform(reg.transform, str(path))


def run_scoring(args, cids: list[str]) -> dict:
    from BrainMetSegLib.longitudinal.series import CompareRequest, run_comparison

    phantoms, seg = Path(args.cache) / "phantoms", Path(args.cache) / "seg"
    rows = []
    for cid in cids:
        folders = [seg / f"{cid}_t{k}" for k in range(args.followups + 1)]
        if not all((f / "run.json").is_file() for f in folders):
            continue  # not segmented yet (a run stopped early): scored when it is
        scored = Path(args.scores or Path(args.cache) / "scores") / f"{cid}.json"
        if scored.is_file():  # scored by an earlier run over the same cache
            rows.append(json.loads(scored.read_text()))
            continue
        truth = truth_of(phantoms, cid, args.followups)
        row = {"case": cid, "true": truth["responses"], "true_analytic": truth["responses_analytic"],
               "true_at_synthesis": truth["responses_at_synthesis"],
               "scenarios": [d["truth"]["scenario"] for d in truth["docs"]]}
        registrations = _saved_registrations(args, cid)
        for mode in args.modes:
            request = CompareRequest(tuple(map(str, folders)), str(Path(args.cache) / "cmp" / cid),
                                     prior=mode == "with",
                                     **({"diameters": args.diameters} if args.diameters else {}),
                                     **({} if args.equivocal_below is None else
                                        {"equivocal_below": args.equivocal_below}))
            outcome = run_comparison(request, registrations=registrations)
            registrations = outcome.result.registrations
            _save_registrations(args, cid, registrations)
            analytic = stable_pairs(outcome, truth, against="analytic")
            row[mode] = {"responses": [r.response for r in outcome.result.rano.timepoints],
                         "reasons": [r.reasons for r in outcome.result.rano.timepoints],
                         **dict(zip(("fragment_pd", "missed_before_pd"), fragment_pds(outcome, truth), strict=True)),
                         "stable_ratios": stable_ratios(stable_pairs(outcome, truth)),
                         "stable_ratios_vs_scale": stable_ratios(stable_pairs(outcome, truth, against="scale")),
                         "stable_ratios_vs_analytic": stable_ratios(analytic),
                         # in the order of the ratios above, for the ratios by size
                         "stable_baseline_analytic_mm": [round(truth["analytic"][0][true_id].longest_mm, 3)
                                                         for *_, true_id in analytic],
                         "diameters_analytic_measured_labels": single_scan_diameters(outcome, truth),
                         "diameters_on": (outcome.measured or {}).get("rule"),
                         "not_new_below_cut_at_baseline": sum(
                             1 for tr in outcome.result.tracks if tr.at[0].status == "below-cut" and
                             any(a.seen for a in tr.at[1:])),
                         "promoted": sum(len(v) for v in ((outcome.prior or {}).get("promoted") or {}).values())}
        rows.append(row)
        scored.parent.mkdir(parents=True, exist_ok=True)
        scored.write_text(json.dumps(row, indent=1) + "\n")
        print(f"{cid}: true {row['true']} analytic {row['true_analytic']} "
              + " ".join(f"{m} {row[m]['responses']}" for m in args.modes), flush=True)
    summary = summarise(rows)
    outline = "" if args.outline_threshold is None else f" --outline-threshold {args.outline_threshold}"
    outline += f" --diameters {args.diameters}" if args.diameters else ""
    outline += f" --equivocal-below {args.equivocal_below:g}" if args.equivocal_below is not None else ""
    outline += " --possible-targets-not-evaluable" if args.possible_targets_not_evaluable else ""
    outline += f" --mirror {args.mirror}" if args.mirror != "none" else ""
    outline += f" --grid-shifts {args.grid_shifts}" if args.grid_shifts != 1 else ""
    synth_options = " ".join(synth_followup_options(args))
    outline += f" --scenario {args.scenario}" if args.scenario != "auto" else ""
    outline += f" --motion {args.motion[0]:g} {args.motion[1]:g}" if args.motion else ""
    outline += f" --interpolation {args.interpolation}" if args.interpolation != "linear" else ""
    doc = {"command": f"python benchmarks/longitudinal_e2e.py -n {args.cases} --seed {args.seed}{outline} "
                      "--cache CACHE",
           "mirror": args.mirror, "grid_shifts": args.grid_shifts, "cpu": cpu_features().as_dict(),
           "patients_scored": len(rows),
           "followups_scored": sum(len(r["true"]) for r in rows),
           "data": f"brainmetseg synth -n {args.cases} --seed {args.seed} --followups {args.followups} "
                   f"{synth_options} (otherwise default options: 1 mm, whole head); every scan segmented by the "
                   "default model; true responses from "
                   "the true label maps ('true', 'right') and from the lesions' analytic shapes ('true_analytic', "
                   "'right_vs_analytic') by the same RANO-BM rules", "summary": summary, "patients": rows}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return doc


def summarise(rows: list[dict]) -> dict:
    """Per mode: responses against both truths ("right": the true label maps' measurements, the
    figure reported since the benchmark began; "right_vs_analytic": the lesions' analytic shapes),
    the confusion matrices, the stable ratios against each truth and the single-scan diameters by
    analytic size."""
    out = {}
    for mode in ("without", "with"):
        if not all(mode in r for r in rows):
            out[mode] = "not run (--modes)"
            continue
        out[mode] = {}
        for name, key in (("", "true"), ("_vs_analytic", "true_analytic")):
            pairs = [(t, p) for r in rows if key in r for t, p in zip(r[key], r[mode]["responses"], strict=True)]
            labels = [c for c in RESPONSES if any(c in pair for pair in pairs)]
            out[mode][f"right{name}"] = f"{sum(a == b for a, b in pairs)}/{len(pairs)}"
            out[mode][f"confusion_true{name}_by_predicted"] = {
                t: {p: sum(1 for a, b in pairs if a == t and b == p) for p in labels} for t in labels}
        out[mode].update({
            "pd_from_fragments": sum(len(r[mode]["fragment_pd"]) for r in rows),
            "pd_from_lesions_missed_before": sum(len(r[mode].get("missed_before_pd", [])) for r in rows),
            "not_new_below_cut_at_baseline": sum(r[mode].get("not_new_below_cut_at_baseline", 0) for r in rows),
            "promoted_by_prior": sum(r[mode].get("promoted", 0) for r in rows),
            "diameters_on": sorted({str(r[mode].get("diameters_on")) for r in rows}),
            "stable_diameter_ratio": _ratio_summary([v for r in rows for v in r[mode]["stable_ratios"]]),
            "stable_diameter_ratio_vs_drawn_scale": _ratio_summary(
                [v for r in rows for v in r[mode].get("stable_ratios_vs_scale", [])]),
            "stable_diameter_ratio_vs_analytic": _ratio_summary(
                [v for r in rows for v in r[mode].get("stable_ratios_vs_analytic", [])]),
            "stable_diameter_ratio_vs_analytic_by_baseline_size": _stable_by_size(rows, mode),
            "diameter_by_analytic_size": _by_size(
                [v for r in rows for v in r[mode].get("diameters_analytic_measured_labels", [])])})
    return out


SIZE_BINS_MM = ((0.0, 5.0), (5.0, 10.0), (10.0, float("inf")))


def _by_size(triples: list[list[float]]) -> dict:
    """Measured / analytic and true label map / analytic longest diameter per analytic size bin
    (every scan's lesions found as one piece): n, median, SD."""
    out = {}
    for lo, hi in SIZE_BINS_MM:
        sel = [t for t in triples if lo <= t[0] < hi and t[0] > 0]
        out[_bin_name(lo, hi)] = {"measured_over_analytic": _ratio_summary([m / a for a, m, _ in sel]),
                     "true_labels_over_analytic": _ratio_summary([t / a for a, _, t in sel])}
    return out


def _stable_by_size(rows: list[dict], mode: str) -> dict:
    """The stable ratios against the analytic truth per analytic baseline size bin (rows scored
    before the sizes were recorded are left out)."""
    pairs = [(mm, v) for r in rows if "stable_baseline_analytic_mm" in r[mode]
             for mm, v in zip(r[mode]["stable_baseline_analytic_mm"], r[mode]["stable_ratios_vs_analytic"],
                              strict=True)]
    return {_bin_name(lo, hi): _ratio_summary([v for mm, v in pairs if lo <= mm < hi]) for lo, hi in SIZE_BINS_MM}


def _bin_name(lo: float, hi: float) -> str:
    return f"<{hi:g} mm" if lo == 0 else (f">={lo:g} mm" if hi == float("inf") else f"{lo:g}-{hi:g} mm")


def _ratio_summary(ratios: list[float]) -> dict:
    if not ratios:
        return {"n": 0, "median": None, "mean": None, "sd": None}
    return {"n": len(ratios), "median": round(float(np.median(ratios)), 3), "mean": round(float(np.mean(ratios)), 3),
            "sd": round(float(np.std(ratios)), 3)}


def _possible_targets_not_evaluable() -> None:
    """compare's RANO-BM config, in this process, with possible-lesion targets not evaluable."""
    from functools import partial

    import BrainMetSegLib.longitudinal.series as series
    from BrainMetSegLib.longitudinal.rano import RanoConfig

    series.RanoConfig = partial(RanoConfig, possible_target_not_evaluable=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--cases", type=int, default=15, help="synthetic patients (default 15)")
    ap.add_argument("--followups", type=int, default=2, help="follow-ups per patient (default 2)")
    ap.add_argument("--seed", type=int, default=7300, help="synth seed (default 7300, not used elsewhere)")
    ap.add_argument("--model", default=None, help="model (default: the default model)")
    ap.add_argument("--outline-threshold", type=float, default=None,
                    help="outline threshold for segment (default: the model card's)")
    ap.add_argument("--mirror", default="none", choices=["none", "lr", "all"],
                    help="segment's test-time mirroring (default none); keep one --cache per setting")
    ap.add_argument("--grid-shifts", type=int, default=1, choices=GRID_SHIFTS,
                    help="segment's test-time grid shifts (default 1: off); keep one --cache per setting")
    ap.add_argument("--scenario", default="auto", choices=["auto", *FOLLOWUP_SCENARIOS],
                    help="synth's --followup-scenario (default auto; repeat: rescans with every lesion unchanged, "
                         "for the measurements' repeatability)")
    ap.add_argument("--motion", nargs=2, type=float, default=None, metavar=("DEG", "MM"),
                    help="synth's --followup-motion (default synth's; 0 0: the head where it was)")
    ap.add_argument("--interpolation", default="linear", choices=["linear", "cubic"],
                    help="synth's --followup-interpolation (default linear)")
    ap.add_argument("--cache", required=True, help="folder for phantoms and segmentations (reused when re-run)")
    ap.add_argument("--prepare-only", action="store_true", help="synthesise and segment, do not compare")
    ap.add_argument("--score-only", action="store_true",
                    help="compare and score the patients already segmented in --cache, segment nothing")
    ap.add_argument("--scores", default=None,
                    help="folder of per-patient scores, reused when re-run (default CACHE/scores; a new folder "
                         "re-scores the cached segmentations, e.g. after a change to compare)")
    ap.add_argument("--diameters", default=None,
                    help="compare's --diameters (image / outline; default: compare's default)")
    ap.add_argument("--equivocal-below", type=float, default=None, metavar="P",
                    help="compare's --equivocal-below (default: compare's default; 0: off)")
    ap.add_argument("--possible-targets-not-evaluable", action="store_true",
                    help="A/B: a target seen only as a possible lesion is not evaluable there "
                         "(RanoConfig.possible_target_not_evaluable=True) instead of measured as gone (the default)")
    ap.add_argument("--modes", nargs="+", default=["without", "with"], choices=["without", "with"],
                    help="compare without and/or with the prior (default both)")
    ap.add_argument("--registrations", default=None,
                    help="folder of the follow-ups' registrations, reused when there (default SCORES/registrations; "
                         "they depend only on the scans, so another scores folder's may be given)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_longitudinal_e2e.json")))
    args = ap.parse_args()
    if args.possible_targets_not_evaluable:
        _possible_targets_not_evaluable()
    if args.score_only:
        _check_cached_followups(Path(args.cache) / "phantoms", args)
    cids = case_ids(Path(args.cache) / "phantoms")[: args.cases] if args.score_only else prepare(args)
    if args.prepare_only:
        return
    run_scoring(args, cids)


if __name__ == "__main__":
    main()
