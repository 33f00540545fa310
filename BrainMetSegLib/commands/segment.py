"""``brainmetseg segment``: CE-T1 scans in, label map + probability map + lesion table out."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from ..errors import BrainMetSegError, InputError
from ..io import format_family, read_csv_rows
from ..outputs import FORMATS, check_outputs, write_result
from ..pipeline import CaseInputs, SegmentConfig, Segmenter, untrained_message
from ..progress import json_lines, no_progress, tqdm_bar

MANIFEST_COLUMNS = ("case_id", "t1ce", "t1", "t2", "flair")


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="*", metavar="CE_T1",
                   help="CE-T1 image(s): .nii/.nii.gz, .nrrd, .mha/.mhd or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (one sub-folder per case when several cases are given)")
    p.add_argument("--t1", help="pre-contrast T1 (for models that take it)")
    p.add_argument("--t2", help="T2 (for models that take it)")
    p.add_argument("--flair", help="FLAIR (for models that take it)")
    p.add_argument("--manifest", metavar="CSV",
                   help="CSV with one case per row: columns case_id, t1ce, and optional t1, t2, flair")
    p.add_argument("--model", default=SegmentConfig.model, help="model name (see `brainmetseg models`) or folder")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto = bf16 on CPUs with native bf16 (AVX-512 BF16/AMX), fp32 on other CPUs, "
                        "fp16 on CUDA")
    p.add_argument("--inference-mode", default=SegmentConfig.inference_mode, choices=("auto", "whole", "paper"),
                   help="auto: one forward over the cropped brain when it fits --memory-budget, else large "
                        "windows; paper: the card's sliding window (128^3, 50%% overlap, averaged)")
    p.add_argument("--memory-budget", type=float, metavar="MB",
                   help="memory the forward may use in auto mode, MiB (default: 2560 or half the free memory)")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model card's)")
    p.add_argument("--min-volume", type=float, metavar="MM3",
                   help="drop predicted lesions smaller than this volume in mm^3 (default: the card's)")
    p.add_argument("--brain-mask", default="deepbet", metavar="deepbet|none|PATH",
                   help="brain extraction: deepbet (default), none for skull-stripped input, or a mask file")
    p.add_argument("--overlap", type=float, help="sliding-window overlap (default: the card's)")
    p.add_argument("--blend", choices=("constant", "gaussian"), help="how overlapping windows combine")
    p.add_argument("--format", choices=tuple(FORMATS), help="image output format (default: like the input)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--progress", default="bar", choices=("bar", "json", "none"))
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def read_manifest(path: str) -> list[CaseInputs]:
    """Cases from a manifest CSV (columns :data:`MANIFEST_COLUMNS`; ``image`` is taken for ``t1ce``)."""
    p = Path(path)
    rows = read_csv_rows(p, "manifest")
    cases = []
    for n, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        image = row.get("t1ce") or row.get("image") or row.get("ce_t1")
        if not image:
            raise InputError(f"{p}, line {n}: no t1ce (CE-T1 path) column value.")

        def resolve(value: str | None) -> str | None:
            if not value:
                return None
            return value if Path(value).is_absolute() else str(p.parent / value)

        cases.append(CaseInputs(resolve(image), resolve(row.get("t1")), resolve(row.get("t2")),
                                resolve(row.get("flair")), row.get("case_id") or None))
    return cases


def _cases(args) -> list[CaseInputs]:
    cases = read_manifest(args.manifest) if args.manifest else []
    extras = {"t1": args.t1, "t2": args.t2, "flair": args.flair}
    if any(extras.values()) and len(args.inputs) != 1:
        raise InputError("--t1/--t2/--flair go with exactly one CE-T1; use --manifest for several cases.")
    cases += [CaseInputs(path, **extras) for path in args.inputs]
    if not cases:
        raise InputError("no input: give a CE-T1 image or --manifest CSV.")
    ids = [c.id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"case ids are not unique ({', '.join(dupes)}); set case_id in a manifest.")
    return cases


def _reporter(args):
    if args.quiet or args.progress == "none":
        return no_progress
    return json_lines() if args.progress == "json" else tqdm_bar()


def run(args) -> int:
    cases = _cases(args)
    batch = len(cases) > 1 or bool(args.manifest)
    if not batch:  # report a missing file before the model is loaded
        for seq, path in cases[0].given().items():
            if not Path(path).exists():
                raise InputError(f"{path}: {seq} file not found.")
    out = Path(args.output)
    config = SegmentConfig(model=args.model, device=args.device, precision=args.precision,
                           threshold=args.threshold, min_volume_mm3=args.min_volume,
                           brain_mask=args.brain_mask, overlap=args.overlap, blend_mode=args.blend,
                           inference_mode=args.inference_mode, memory_budget_mb=args.memory_budget)
    segmenter = Segmenter(config)
    if not args.quiet and not segmenter.package.card.trained:
        print(f"brainmetseg segment: warning: {untrained_message(segmenter.package)}", file=sys.stderr)
    progress = _reporter(args)
    plans = []
    for case in cases:
        ext = FORMATS[args.format] if args.format else format_family(case.t1ce)
        folder = out / case.id if batch else out
        if not batch:  # single case: fail before any work
            check_outputs(folder, ext, args.overwrite)
        plans.append((case, folder, ext))
    summary = []
    for case, folder, ext in plans:
        t0 = time.perf_counter()
        try:
            result = segmenter.run(case, progress)
            paths = write_result(result, folder, ext, args.overwrite)
        except BrainMetSegError as exc:
            if not batch:
                raise
            print(f"brainmetseg segment: case {case.id} failed: {exc}", file=sys.stderr)
            summary.append({"case_id": case.id, "status": "failed", "lesions": "", "total_volume_mm3": "",
                            "seconds": f"{time.perf_counter() - t0:.1f}", "message": str(exc)})
            continue
        volume = sum(r["volume_mm3"] for r in result.table)
        summary.append({"case_id": case.id, "status": "ok", "lesions": result.n_lesions,
                        "total_volume_mm3": f"{volume:.1f}", "seconds": f"{time.perf_counter() - t0:.1f}",
                        "message": ""})
        if args.progress == "json" and not args.quiet:
            print(json.dumps({"type": "result", "case": case.id, "lesions": result.n_lesions,
                              "outputs": {k: str(p) for k, p in paths.items()}}), flush=True)
        elif not args.quiet:
            print(f"{case.id}: {result.n_lesions} lesion(s), {volume:.1f} mm^3 -> {folder}", file=sys.stderr)
    failed = [s for s in summary if s["status"] == "failed"]
    if batch:
        _write_summary(summary, out, args)
    return 1 if failed else 0


def _write_summary(summary: list[dict], out: Path, args) -> None:
    import io as _io

    from ..io import write_text
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(summary[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    write_text(buf.getvalue(), out / "summary.csv", overwrite=True)
    if args.quiet:
        return
    ok = sum(s["status"] == "ok" for s in summary)
    lines = [f"{'case':24s} {'status':7s} {'lesions':>7s} {'volume mm3':>11s} {'s':>6s}"]
    lines += [f"{s['case_id']:24s} {s['status']:7s} {s['lesions']!s:>7s} {s['total_volume_mm3']:>11s} "
              f"{s['seconds']:>6s}" for s in summary]
    lines.append(f"{ok}/{len(summary)} case(s) segmented; summary in {out / 'summary.csv'}")
    print("\n".join(lines), file=sys.stderr)
