"""``brainmetseg compare``: follow lesions from a baseline through follow-ups; RANO-BM response.

Each argument is a ``segment`` result folder, or a scan (segmented on the way with --model),
or, with ``--labels``, a scan whose label map is given. Writes into OUT:

  longitudinal.json   tracks (stable ids) with per-time-point measures, RANO-BM assessment
  longitudinal.csv    the same table, one row per lesion and time point
  rano_bm.csv         one row per follow-up: sums, nadir, changes, categories, reasons
  report.html         table, size curves, montage (self-contained); curves.png, montage.png
  tracks_<k>.<ext>    per time point, its label map with track ids (same id = same lesion)
  segmentations/<k>/  ``segment`` outputs of scans segmented on the way
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import sys
import time
from pathlib import Path

from ..errors import InputError

OUTPUT_FILES = ("longitudinal.json", "longitudinal.csv", "rano_bm.csv", "report.html", "curves.png", "montage.png")


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="TIMEPOINT",
                   help="baseline first, then follow-ups: `segment` result folders, or scans (segmented on the "
                        "way), or scans with --labels")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--labels", nargs="+", metavar="LABELS",
                   help="one label map per input (instance ids or a 0/1 mask on the scan's grid); the inputs "
                        "are then scans")
    p.add_argument("--names", nargs="+", help="a name per time point (default: folder or file names)")
    p.add_argument("--days", nargs="+", type=float,
                   help="scan dates as days since baseline (first 0); used for the 4-week confirmation of CR/PR")
    p.add_argument("--model", default=None, help="model for scans segmented on the way (default: the default model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--brain-mask", default="deepbet", metavar="deepbet|none|PATH",
                   help="brain extraction for scans segmented on the way")
    p.add_argument("--prior", action="store_true",
                   help="when segmenting follow-up scans on the way, use the baseline's lesions (registered, "
                        "dilated by 3 mm) as a hint: the threshold there is lowered by --prior-factor")
    p.add_argument("--prior-factor", type=float, default=0.5,
                   help="threshold inside the prior lesions = the model's threshold x this (default 0.5)")
    p.add_argument("--min-overlap", type=float, default=0.1,
                   help="shared voxels / voxels of the smaller lesion needed to match by overlap (default 0.1)")
    p.add_argument("--max-distance", type=float, default=8.0, metavar="MM",
                   help="largest centroid distance for matching lesions left without overlap (default 8 mm)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--progress", default="bar", choices=("bar", "json", "none"))
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _check_args(args) -> list[str]:
    n = len(args.inputs)
    if n < 2:
        raise InputError("compare needs a baseline and at least one follow-up (two or more inputs).")
    for what, values in (("--labels", args.labels), ("--names", args.names), ("--days", args.days)):
        if values is not None and len(values) != n:
            raise InputError(f"{what}: give one value per input ({n}), got {len(values)}.")
    if args.days is not None and (args.days[0] != 0 or any(b <= a for a, b in zip(args.days, args.days[1:],
                                                                                    strict=False))):
        raise InputError("--days: the baseline is day 0 and the dates must increase.")
    if args.prior and args.labels:
        raise InputError("--prior guides the segmentation of follow-up scans; it does nothing with --labels.")
    if not 0 < args.prior_factor <= 1:
        raise InputError(f"--prior-factor {args.prior_factor}: must be in (0, 1].")
    if not 0 < args.min_overlap <= 1 or args.max_distance < 0:
        raise InputError("--min-overlap must be in (0, 1] and --max-distance >= 0 mm.")
    for path in args.inputs + (args.labels or []):
        if not Path(path).exists():
            raise InputError(f"{path}: not found.")
    from ..longitudinal.sources import scan_name

    names = args.names or [scan_name(p) if Path(p).is_file() else Path(p).name for p in args.inputs]
    if len(set(names)) != n:
        names = [f"{k}_{name}" for k, name in enumerate(names)]
    return names


def _csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["track_id"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else
                             "" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _load(args, names):
    from ..longitudinal.sources import from_result_folder, from_scan_and_labels, is_result_folder

    out = Path(args.output)
    timepoints, to_segment = [], []
    registrations = [None] * len(args.inputs)
    for k, (path, name) in enumerate(zip(args.inputs, names, strict=True)):
        if args.labels:
            timepoints.append(from_scan_and_labels(path, args.labels[k], name))
        elif is_result_folder(path):
            timepoints.append(from_result_folder(path, name))
        elif Path(path).is_dir() and any(Path(path).glob("lesion_labels.*")):
            raise InputError(f"{path}: result folder without run.json; give the scan and --labels instead.")
        else:
            timepoints.append(None)
            to_segment.append(k)
    if to_segment:
        from ..io import format_family, read_scalar_volume
        from ..longitudinal.tracking import TimePoint
        from ..outputs import check_outputs, write_result
        from ..pipeline import SegmentConfig, Segmenter
        from ..progress import json_lines, no_progress, tqdm_bar

        folders = {k: out / "segmentations" / names[k] for k in to_segment}
        for k in to_segment:
            check_outputs(folders[k], format_family(args.inputs[k]), args.overwrite)
        config = SegmentConfig(device=args.device, brain_mask=args.brain_mask,
                               **({"model": args.model} if args.model else {}))
        segmenter = Segmenter(config)
        progress = no_progress if args.quiet or args.progress == "none" else (
            json_lines() if args.progress == "json" else tqdm_bar())
        for k in to_segment:
            result = segmenter.run(args.inputs[k], progress)
            image = read_scalar_volume(args.inputs[k], "CE-T1")
            if args.prior and k > 0:
                registrations[k] = _apply_prior(result, image, timepoints[0], segmenter, args)
            write_result(result, folders[k], format_family(args.inputs[k]), args.overwrite)
            timepoints[k] = TimePoint(names[k], image, result.labels, result.table, source=str(args.inputs[k]))
    for k, tp in enumerate(timepoints):
        tp.days = None if args.days is None else args.days[k]
    return timepoints, registrations


def _apply_prior(result, image, baseline, segmenter, args):
    """Re-threshold a follow-up's probability with the baseline's lesions as a hint (in place);
    returns the registration, so it is not computed twice."""
    from ..lesions import lesion_table
    from ..longitudinal.prior import PriorConfig, guided_labels, prior_region
    from ..longitudinal.registration import register_followup

    prior = PriorConfig(threshold_factor=args.prior_factor)
    reg = register_followup(baseline.image, image, result.case_id)
    region = prior_region(baseline.labels, image, reg, prior.margin_mm)
    result.labels = guided_labels(result.probability, region, segmenter.threshold, segmenter.min_volume, prior)
    result.table = lesion_table(result.labels, result.probability)
    result.provenance["prior"] = {"baseline": baseline.source, "threshold_factor": prior.threshold_factor,
                                  "margin_mm": prior.margin_mm,
                                  "threshold_inside_prior": segmenter.threshold * prior.threshold_factor}
    return reg


def run(args) -> int:
    from ..io import check_writable, format_family, write_image, write_text
    from ..longitudinal import CompareConfig, MatchConfig, compare_timepoints
    from ..longitudinal.report import curves_png, html_report, montage_png
    from ..progress import json_lines, no_progress, tqdm_bar

    names = _check_args(args)
    out = Path(args.output)
    ext = format_family(args.inputs[0]) if Path(args.inputs[0]).is_file() else ".nii.gz"
    planned = [out / f for f in OUTPUT_FILES] + [out / f"tracks_{k}{ext}" for k in range(len(args.inputs))]
    for path in planned:  # fail before any work
        check_writable(path, args.overwrite)
    t0 = time.perf_counter()
    timepoints, registrations = _load(args, names)
    progress = no_progress if args.quiet or args.progress == "none" else (
        json_lines() if args.progress == "json" else tqdm_bar())
    config = CompareConfig(match=MatchConfig(min_overlap_fraction=args.min_overlap,
                                             max_distance_mm=args.max_distance))
    result = compare_timepoints(timepoints, config, registrations, progress=progress)
    doc = {"brainmetseg_compare": {"inputs": [str(p) for p in args.inputs], "labels": args.labels,
                                   "match": {"min_overlap_fraction": args.min_overlap,
                                             "max_distance_mm": args.max_distance},
                                   "prior": {"threshold_factor": args.prior_factor} if args.prior else None},
           **result.to_dict()}
    write_text(json.dumps(doc, indent=2, default=float) + "\n", out / "longitudinal.json", args.overwrite)
    write_text(_csv(result.table_rows()), out / "longitudinal.csv", args.overwrite)
    rano_rows = [{"timepoint": r.index, "name": result.timepoints[r.index].name, "target_sum_mm": r.target_sum_mm,
                  "nadir_sum_mm": r.nadir_sum_mm, "change_from_baseline_pct": r.change_from_baseline_pct,
                  "change_from_nadir_pct": r.change_from_nadir_pct, "target": r.target_response,
                  "non_target": r.nontarget_response, "new_lesions": " ".join(map(str, r.new_lesions)),
                  "equivocal_new": " ".join(map(str, r.equivocal_new)), "radiographic_response": r.response,
                  "confirmed": "" if r.confirmed is None else r.confirmed, "reasons": "; ".join(r.reasons)}
                 for r in result.rano.timepoints]
    write_text(_csv(rano_rows), out / "rano_bm.csv", args.overwrite)
    for k, image in enumerate(result.track_maps):
        write_image(image, out / f"tracks_{k}{ext}", args.overwrite)
    curves, montage = curves_png(result), montage_png(result, timepoints)
    _write_bytes(curves, out / "curves.png", args.overwrite)
    _write_bytes(montage, out / "montage.png", args.overwrite)
    write_text(html_report(result, curves, montage), out / "report.html", args.overwrite)
    if args.progress == "json" and not args.quiet:
        print(json.dumps({"type": "result", "output": str(out), "tracks": len(result.tracks),
                          "responses": [r.response for r in result.rano.timepoints]}), flush=True)
    elif not args.quiet:
        lines = [f"{len(result.tracks)} lesion(s) tracked over {len(timepoints)} time points "
                 f"({time.perf_counter() - t0:.1f} s); RANO-BM radiographic response (no steroid/clinical data):"]
        lines += [f"  {result.timepoints[r.index].name}: {r.response} (target sum {r.target_sum_mm:.1f} mm, "
                  f"{'' if r.change_from_baseline_pct is None else f'{r.change_from_baseline_pct:+.1f} % vs baseline'})"
                  for r in result.rano.timepoints]
        lines.append(f"report: {out / 'report.html'}")
        print("\n".join(lines), file=sys.stderr)
    return 0


def _write_bytes(data: bytes, path: Path, overwrite: bool) -> None:
    import os
    import tempfile

    from ..errors import OutputError
    from ..io import check_writable, default_file_mode

    check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror}).") from None
