"""``brainmetseg summarize OUTDIR``: one table of a cohort run's cases, over all its shards and reruns.

Sources, in the output folder of ``segment``:

* every ``summary*.csv`` (one per process: ``summary.csv`` or ``summary.shard-I-of-N.csv``);
  for a case listed in several, the newest file's row is the last word;
* every case folder's ``run.json`` (written last by ``segment``), believed only when each field
  has its type and each output it lists is inside the folder with the sha256 it recorded
  (:mod:`BrainMetSegLib.run_record`): a case with such a folder counts as done even when no
  summary lists it (its process was killed later), and a case a summary calls done whose
  folder fails a check is ``incomplete``, with the reason (file and field) as its message;
* with ``--manifest``, the cases that should be there: those in no source are ``missing``.

The merged table goes to ``OUTDIR/cohort_summary.csv`` (or ``-o``), replacing a table summarize
wrote before but no other file (unless ``--overwrite``); the exit code is 0 only when every case
is done.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from ..batch import SUMMARY_GLOB
from ..errors import InputError
from ..run_record import RunRecordError, read_run, verify_outputs
from ..staging import write_text
from ..textfiles import read_csv_rows

COLUMNS = ("case_id", "status", "lesions", "total_volume_mm3", "seconds", "source", "message")
DONE = ("ok", "skipped")


def add_arguments(p) -> None:
    p.add_argument("outdir", metavar="OUTDIR", help="output folder of `brainmetseg segment` (all shards)")
    p.add_argument("--manifest", metavar="CSV", help="the cohort's manifest: report the cases not yet there")
    p.add_argument("-o", "--output", metavar="CSV", help="merged table (default: OUTDIR/cohort_summary.csv)")
    p.add_argument("--quiet", action="store_true", help="write the table, print nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing -o file that is not a table summarize wrote (one it wrote is "
                        "always replaced)")


def _own_table(path: Path) -> bool:
    """Whether ``path`` is a table summarize wrote before (its header row), which each run replaces."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().rstrip("\r\n") == ",".join(COLUMNS)


def _run_json(folder: Path) -> tuple[dict | None, str]:
    """(the case's run.json, "") when it can be believed: every field of its type and every
    output it lists inside the folder with the content recorded (sha256); (None, why) otherwise
    (why is "" when the folder has no run.json at all)."""
    try:
        run = read_run(folder)
    except RunRecordError as exc:
        return None, str(exc)
    if run is None:
        return None, ""
    why = verify_outputs(folder, run)
    return (None, why) if why else (run, "")


def _seconds(run: dict) -> float:
    return sum((run.get("timings_s") or {}).values())


def collect(outdir: Path, manifest_ids: list[str] | None = None) -> tuple[list[dict], dict[str, list[float]]]:
    """Merged rows (one per case, sorted by case id) and seconds over the done cases per stage
    (key ``"total"``: per case, all stages)."""
    rows: dict[str, dict] = {}
    for path in sorted(outdir.glob(SUMMARY_GLOB), key=lambda p: p.stat().st_mtime):
        for row in read_csv_rows(path, "summary"):
            if row.get("case_id"):
                rows[row["case_id"]] = {**{c: row.get(c) or "" for c in COLUMNS}, "source": path.name}
    stages: dict[str, list[float]] = {}
    runs, damaged = {}, {}
    for folder in sorted(p for p in outdir.iterdir() if p.is_dir() and not p.is_symlink()):
        run, why = _run_json(folder)
        if run is not None and run.get("case") != folder.name:
            run, why = None, f"{folder / 'run.json'}: records case {run.get('case')!r}, not {folder.name!r}"
        if run is not None:
            runs[folder.name] = run
        elif why:
            damaged[folder.name] = why
    for case_id, run in runs.items():
        stages.setdefault("total", []).append(_seconds(run))
        for stage, seconds in (run.get("timings_s") or {}).items():
            stages.setdefault(stage, []).append(seconds)
        if case_id not in rows:
            rows[case_id] = {"case_id": case_id, "status": "ok", "lesions": run.get("lesions", ""),
                             "total_volume_mm3": "", "seconds": f"{_seconds(run):.1f}",
                             "source": f"{case_id}/run.json", "message": "no summary row (process stopped?)"}
    for case_id, why in damaged.items():  # a folder whose record cannot be believed is not done
        if rows.get(case_id, {}).get("status", "ok") in DONE:
            rows[case_id] = {**rows.get(case_id, {"lesions": "", "total_volume_mm3": "", "seconds": ""}),
                             "case_id": case_id, "status": "incomplete", "source": f"{case_id}/run.json",
                             "message": why}
    for case_id, row in rows.items():
        if row["status"] in DONE and case_id not in runs:
            row.update(status="incomplete", message=f"{outdir / case_id}: outputs incomplete or run.json missing")
    for case_id in manifest_ids or []:
        if case_id not in rows:
            rows[case_id] = {"case_id": case_id, "status": "missing", "lesions": "", "total_volume_mm3": "",
                             "seconds": "", "source": "", "message": "in the manifest, not in OUTDIR"}
    return [rows[k] for k in sorted(rows)], stages


def run(args) -> int:
    outdir = Path(args.outdir)
    if not outdir.is_dir():
        raise InputError(f"{outdir}: not a folder (give the -o folder of `brainmetseg segment`).")
    manifest_ids = None
    if args.manifest:
        from .segment import read_manifest

        manifest_ids = [case.id for case in read_manifest(args.manifest)]
    rows, stages = collect(outdir, manifest_ids)
    if not rows:
        raise InputError(f"{outdir}: no {SUMMARY_GLOB} and no case folder with run.json; nothing to summarize.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target = Path(args.output) if args.output else outdir / "cohort_summary.csv"
    write_text(buf.getvalue(), target, overwrite=args.overwrite or _own_table(target))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed", "incomplete", "missing")}
    if not args.quiet:
        print(_report(rows, stages, counts, target))
    return 0 if counts["failed"] + counts["incomplete"] + counts["missing"] == 0 else 1


def _report(rows: list[dict], stages: dict[str, list[float]], counts: dict[str, int], target: Path) -> str:
    lines = [f"{'case':24s} {'status':10s} {'lesions':>7s} {'volume mm3':>11s} {'s':>7s}  source"]
    lines += [f"{r['case_id']:24s} {r['status']:10s} {r['lesions']!s:>7s} {r['total_volume_mm3']:>11s} "
              f"{r['seconds']:>7s}  {r['source']}" for r in rows]
    done = counts["ok"] + counts["skipped"]
    lesions = sum(int(r["lesions"]) for r in rows if r["status"] in DONE and str(r["lesions"]).isdigit())
    lines.append(f"{len(rows)} case(s): {done} done ({counts['skipped']} skipped as already done in their "
                 f"last run), {counts['failed']} failed, {counts['incomplete']} incomplete, "
                 f"{counts['missing']} missing; {lesions} lesion(s) in the done cases")
    if stages:
        median = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items() if k != "total")
        total = stages["total"]
        lines.append(f"seconds per done case: median {statistics.median(total):.1f}, sum {sum(total):.0f} "
                     f"(median per stage: {median})")
    for r in rows:
        if r["status"] in ("failed", "incomplete", "missing") and r["message"]:
            lines.append(f"  {r['case_id']}: {r['status']}: {r['message']}")
    lines.append(f"table in {target}")
    return "\n".join(lines)

