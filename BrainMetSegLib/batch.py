"""Cohort runs of ``segment``: shards of a manifest, resuming, and per-shard summaries.

A cohort is split into ``N`` shards so that ``N`` processes (array tasks of a
scheduler, or processes on one node) each take their share:

* **Split rule** (as nnU-Net's ``-part_id/-num_parts``): the cases are sorted by
  ``case_id`` and shard ``I`` (0-based) takes every ``N``-th one starting at
  position ``I``. Shards never overlap, together cover every case, differ in size
  by at most one case, and do not depend on the order of the manifest's rows.
  Adding cases to a manifest may move other cases to another shard; with
  ``--skip-existing`` that costs nothing, since a finished case is skipped by
  whichever shard it lands in.
* **Resuming** (``--skip-existing``): a case is done when its folder holds a
  ``run.json`` (written last, so its presence means the images and tables before it
  were written) for the same case, the same input files (sha256), the same model
  (sha256), the same settings and output format, and every output it lists exists.
  A case without a ``run.json`` is the leftover of an interrupted run and is
  redone, replacing its partial files. A finished case made with another model,
  other settings or other inputs is redone only with ``--overwrite``; without it the
  case fails with a message saying what differs (nothing the user had is replaced
  unasked).
* **Summaries**: each process writes ``summary.csv`` (unsharded) or
  ``summary.shard-I-of-N.csv`` into the output folder, updated after every case, so an
  interrupted shard leaves its rows so far; ``brainmetseg summarize`` merges them
  (:mod:`BrainMetSegLib.commands.summarize`). Two processes may still share a file (the same
  manifest started twice): each update is a merge under a lock (read, replace this case's
  row, atomic rename), never last-writer-wins, and a case skipped because another run holds
  its folder never replaces that run's row.
* **Believing a finished case**: its run.json is read field by field and every output it
  lists must be inside the case folder with the sha256 recorded there
  (:mod:`BrainMetSegLib.run_record`); an edited output or record makes the case stale.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checksums import sha256_file
from .errors import BrainMetSegError, FolderBusyError, InputError
from .options import ProgressMode
from .outputs import planned_paths, update_shared_text
from .run_record import RunRecordError, read_run, verify_outputs

SUMMARY_COLUMNS = ("case_id", "status", "lesions", "total_volume_mm3", "seconds", "message")
SUMMARY_GLOB = "summary*.csv"

# Requested settings that run.json also stores resolved (``threshold_used``, the card's
# overlap in ``inference.overlap``, the device in ``preprocess``/``inference``...): compare
# the resolved values, so ``--threshold 0.5`` on a card whose threshold is 0.5 is no change.
# The model is compared by its weights' sha256 (its name or folder may differ).
# Where OpenVINO's exported networks are kept changes nothing in the outputs.
_IGNORED_SETTINGS = ("model", "device", "threshold", "min_volume_mm3", "outline_threshold", "overlap",
                     "blend_mode", "patch_size", "backend_cache", "inference.backend_cache")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``: cases sorted by id, every ``count``-th from ``index``."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"shard {self.index}/{self.count}: the index is 0-based and must lie in "
                             f"0..{self.count - 1} (e.g. --shard 0/{max(self.count, 1)}).")

    def take(self, items: Sequence, key) -> list:
        """The items of this shard; ``key(item)`` is the case id the split is defined on."""
        return sorted(items, key=key)[self.index::self.count]

    @property
    def summary_name(self) -> str:
        return f"summary.shard-{self.index}-of-{self.count}.csv"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def summary_name(shard: Shard | None) -> str:
    """The summary file a process writes: one per shard, so shards never write the same file."""
    return shard.summary_name if shard else "summary.csv"


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> Shard:
    """``"I/N"`` (0-based I) or ``"slurm"`` (read from the array-job environment)."""
    if text.strip().lower() == "slurm":
        return slurm_shard(environ)
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--shard {text!r}: expected I/N with whole numbers (e.g. 0/4), or 'slurm'.") from None
    return Shard(index, count)


def slurm_shard(environ: Mapping[str, str] = os.environ) -> Shard:
    """The shard of a SLURM array task: ``(TASK_ID - TASK_MIN) / TASK_STEP`` of ``TASK_COUNT``.

    Any contiguous array works (``--array=0-9``, ``--array=1-10``, ``--array=0-18:2``, with or
    without a ``%`` limit); arrays with gaps (``--array=1,3,8``) are refused because their
    tasks cannot be numbered 0..N-1 from the environment.
    """
    def number(name: str, default: int | None = None) -> int:
        value = environ.get(name)
        if value is None or value == "":
            if default is None:
                raise InputError(f"--shard slurm: {name} is not set; is this a SLURM array task "
                                 "(sbatch --array)? Otherwise give --shard I/N.")
            return default
        try:
            return int(value)
        except ValueError:
            raise InputError(f"--shard slurm: {name}={value!r} is not a whole number.") from None

    task, count = number("SLURM_ARRAY_TASK_ID"), number("SLURM_ARRAY_TASK_COUNT")
    first, step = number("SLURM_ARRAY_TASK_MIN", 0), number("SLURM_ARRAY_TASK_STEP", 1)
    last = number("SLURM_ARRAY_TASK_MAX", first + step * (count - 1))
    if step < 1 or (task - first) % step or first + step * (count - 1) != last:
        raise InputError(f"--shard slurm: array tasks {first}-{last} step {step} ({count} tasks) are not "
                         "evenly spaced; use a range such as --array=0-9, or pass --shard I/N yourself.")
    return Shard((task - first) // step, count)


def add_arguments(p) -> None:
    """The cohort options of ``segment``."""
    p.add_argument("--shard", metavar="I/N|slurm",
                   help="process shard I (0-based) of N: cases sorted by case_id, every N-th from I "
                        "(nnU-Net's -part_id I -num_parts N); 'slurm' reads SLURM_ARRAY_TASK_ID/_COUNT")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip cases whose outputs are complete and match this model, settings and inputs; "
                        "redo interrupted ones (and, with --overwrite, mismatching ones)")


@dataclass(frozen=True)
class Decision:
    """What to do with one case: ``skip`` it (``run`` holds its run.json) or compute it."""

    skip: bool
    overwrite: bool
    reason: str = ""
    run: dict | None = None


def _flat(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _comparable(settings: dict) -> dict:
    """Settings as run.json stores them (JSON types, NaN as null), minus those that do not matter."""
    def safe(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    flat = {k: safe(v) for k, v in _flat(json.loads(json.dumps(settings))).items()}
    return {k: v for k, v in flat.items() if k not in _IGNORED_SETTINGS}


def mismatch(run: dict, case, folder: Path, ext: str, provenance: dict) -> str:
    """Why the finished run in ``run`` does not stand for this case now ("" when it does)."""
    if run.get("case") != case.id:
        return f"run.json is for case {run.get('case')!r}"
    scored = (provenance.get("settings") or {}).get("candidate_stage") is not None
    wanted = {k: p.name for k, p in planned_paths(folder, ext, scored).items()}
    written = run.get("outputs") or {}
    if written != wanted:
        missing = sorted(set(wanted) - set(written))
        if missing and all(written.get(k) == v for k, v in wanted.items() if k in written):
            return f"made by an earlier version that did not write {', '.join(wanted[k] for k in missing)}"
        return "outputs were written in another format"
    damaged = verify_outputs(folder, run)  # present, inside the folder, and as written (sha256)
    if damaged:
        return damaged
    model = (run.get("model") or {}).get("sha256")
    if model != provenance["model"]["sha256"]:
        return f"made with another model (weights sha256 {str(model)[:12]}...)"
    thick = ((run.get("model") or {}).get("thick_slice_weights") or {}).get("sha256")
    if thick != (provenance["model"].get("thick_slice_weights") or {}).get("sha256"):
        return f"made with other thick-slice weights (sha256 {str(thick)[:12]}...)"
    if (run.get("model") or {}).get("int8_network") != provenance["model"].get("int8_network"):
        return "made with a model whose int8 networks differ"
    old, new = _comparable(run.get("settings") or {}), _comparable(provenance["settings"])
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        return "settings changed: " + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in changed[:4])
    recorded = {s: (v or {}).get("sha256") for s, v in (run.get("inputs") or {}).items()}
    given = case.given()
    if set(recorded) != set(given):
        return "made from other input sequences"
    for seq, path in given.items():
        if not Path(path).exists() or sha256_file(path) != recorded[seq]:  # a file or a DICOM folder
            return f"{path} changed since (sha256)"
    return ""


def decide(case, folder: Path, ext: str, provenance: dict, overwrite: bool) -> Decision:
    """Skip a finished matching case; redo an interrupted one; redo a mismatching one only with ``overwrite``."""
    try:
        run = read_run(folder)
    except RunRecordError as exc:  # there, but not to be believed: as stale as another model's run
        if not overwrite:
            raise _Stale(f"{exc} Pass --overwrite to redo the case, or use another output folder.") from None
        with contextlib.suppress(IsADirectoryError):  # a folder there: check_outputs names it
            (folder / "run.json").unlink(missing_ok=True)
        return Decision(False, True, f"{exc} Redoing.")
    if run is None:
        # No run.json: nothing there, or an interrupted run's partial files (run.json is written last).
        partial = any(p.exists() for p in planned_paths(folder, ext).values())
        return Decision(False, partial or overwrite, "interrupted earlier; redoing" if partial else "")
    why = mismatch(run, case, folder, ext, provenance)
    if not why:
        return Decision(True, False, "already done", run)
    if not overwrite:
        raise _Stale(f"{folder}: {why}; pass --overwrite to redo it, or use another output folder.")
    # Retire the old run.json first: should this redo be interrupted, the folder then reads as
    # unfinished rather than as the old result beside half of the new files.
    (folder / "run.json").unlink(missing_ok=True)
    return Decision(False, True, f"{why}; redoing")


class _Stale(BrainMetSegError):
    """A finished case made differently, and no --overwrite to replace it."""

    exit_code = 4


class BatchRun:
    """Bookkeeping of one ``segment`` process over several cases: shard, skips, summary file."""

    def __init__(self, out: Path, shard: Shard | None, skip_existing: bool, overwrite: bool,
                 provenance: dict, quiet: bool = False, json_mode: bool = False):
        self.out, self.shard, self.skip_existing, self.overwrite = out, shard, skip_existing, overwrite
        self.provenance, self.quiet, self.json_mode = provenance, quiet, json_mode
        self.rows: list[dict] = []
        self.summary_path = out / summary_name(shard)

    @classmethod
    def from_args(cls, args, out: Path, provenance: dict) -> BatchRun:
        shard = parse_shard(args.shard) if args.shard else None
        return cls(out, shard, args.skip_existing, args.overwrite, provenance, args.quiet,
                   args.progress == ProgressMode.JSON)

    def select(self, plans: list[tuple]) -> list[tuple]:
        """This process's share of ``plans`` ((case, folder, ext) tuples)."""
        if self.shard is None:
            return plans
        mine = self.shard.take(plans, key=lambda plan: plan[0].id)
        self._status(f"shard {self.shard}: {len(mine)} of {len(plans)} case(s)")
        return mine

    def start(self, position: int, total: int, case, folder: Path, ext: str) -> Decision:
        """Announce a case and decide whether it runs; a stale case raises a BrainMetSegError."""
        if self.json_mode and not self.quiet:
            print(json.dumps({"type": "case", "case": case.id, "index": position, "total": total}), flush=True)
        else:
            self._status(f"[{position + 1}/{total}] case {case.id}")
        if not self.skip_existing:
            return Decision(False, self.overwrite)
        decision = decide(case, folder, ext, self.provenance, self.overwrite)
        if decision.reason:
            self._status(f"case {case.id}: {decision.reason}")
        return decision

    def skipped(self, case, run: dict, folder: Path) -> None:
        try:
            table = json.loads((folder / "lesions.json").read_text(encoding="utf-8")).get("lesions", [])
            volume = f"{sum(float(r.get('volume_mm3') or 0) for r in table):.1f}"
        except (OSError, ValueError, AttributeError, TypeError):
            volume = ""
        seconds = sum(v for v in (run.get("timings_s") or {}).values() if isinstance(v, int | float))
        self._record(case.id, "skipped", run.get("lesions", ""), volume, seconds,
                     "outputs complete and up to date")
        if self.json_mode and not self.quiet:
            print(json.dumps({"type": "result", "case": case.id, "status": "skipped",
                              "lesions": run.get("lesions"),
                              "outputs": {k: str(folder / v) for k, v in (run.get("outputs") or {}).items()}}),
                  flush=True)

    def done(self, case, result, seconds: float) -> None:
        volume = sum(r["volume_mm3"] for r in result.table)
        self._record(case.id, "ok", result.n_lesions, f"{volume:.1f}", seconds, "")

    def failed(self, case, exc: Exception, seconds: float) -> None:
        print(f"brainmetseg segment: case {case.id} failed: {exc}", file=sys.stderr)
        # A case another run is writing right now is that run's to report: this row must not
        # replace the other run's (a finished case would read as failed).
        self._record(case.id, "failed", "", "", seconds, str(exc), keep_others=isinstance(exc, FolderBusyError))

    @property
    def any_failed(self) -> bool:
        return any(r["status"] == "failed" for r in self.rows)

    def _record(self, case_id: str, status: str, lesions, volume: str, seconds: float, message: str,
                keep_others: bool = False) -> None:
        row = {"case_id": case_id, "status": status, "lesions": lesions,
               "total_volume_mm3": volume, "seconds": f"{seconds:.1f}", "message": message}
        self.rows.append(row)
        self._write(row, keep_others)  # after every case, so an interrupted process leaves its rows so far

    def _write(self, row: dict | None = None, keep_others: bool = False) -> None:
        """Merge ``row`` into the summary file under a lock (other processes may share it)."""
        def merge(old_text: str | None) -> str:
            rows = {}
            if old_text:
                try:
                    rows = {r.get("case_id"): r for r in csv.DictReader(io.StringIO(old_text, newline=""))
                            if r.get("case_id")}
                except csv.Error:
                    rows = {}
            if row is not None and not (keep_others and row["case_id"] in rows):
                rows[row["case_id"]] = row
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore",
                                    restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows.values())
            return buf.getvalue()

        update_shared_text(self.summary_path, merge)

    def finish(self) -> None:
        """Write the summary (also when the shard had no case) and print the table."""
        self._write()
        if self.quiet:
            return
        n_ok = sum(r["status"] in ("ok", "skipped") for r in self.rows)
        n_skipped = sum(r["status"] == "skipped" for r in self.rows)
        lines = [f"{'case':24s} {'status':7s} {'lesions':>7s} {'volume mm3':>11s} {'s':>6s}"]
        lines += [f"{r['case_id']:24s} {r['status']:7s} {r['lesions']!s:>7s} {r['total_volume_mm3']:>11s} "
                  f"{r['seconds']:>6s}" for r in self.rows]
        skipped = f" ({n_skipped} already done)" if n_skipped else ""
        lines.append(f"{n_ok}/{len(self.rows)} case(s) segmented{skipped}; summary in {self.summary_path}")
        print("\n".join(lines), file=sys.stderr)

    def _status(self, text: str) -> None:
        if not self.quiet:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)
