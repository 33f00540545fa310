"""``brainmetseg segment``: CE-T1 scans in, label map + probability map + lesion table out."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import batch as cohort
from ..dicom_series import check_dicom_folder
from ..errors import BrainMetSegError, CancelledError, InputError, OutputError
from ..images import format_family
from ..memory import AVAILABLE_FRACTION, PIPELINE_RESERVE_MB
from ..options import (
    GRID_SHIFTS,
    Backend,
    BlendMode,
    Device,
    InferenceMode,
    MaskMethod,
    Mirroring,
    OutputFormat,
    Precision,
    ProgressMode,
    ScorerMode,
    cli_float,
    values,
)
from ..outputs import FORMATS, check_outputs, output_folder_lock, write_result
from ..pipeline import CaseInputs, SegmentConfig, Segmenter, untrained_message
from ..progress import error_json, reporter
from ..textfiles import read_csv_rows


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
    p.add_argument("--device", default=Device.AUTO.value, choices=values(Device))
    p.add_argument("--precision", default=Precision.AUTO.value, choices=values(Precision),
                   help="auto = the model's int8 network where it ships one (OpenVINO) on CPUs without "
                        "native bf16 and on those with AVX-512 BF16 and VNNI; else bf16 on CPUs with native "
                        "bf16 (AVX-512 BF16/AMX), fp32 on others; fp16 on CUDA. int8: the model's int8 "
                        "network (an error where it has none)")
    p.add_argument("--backend", default=Backend.AUTO.value, choices=values(Backend),
                   help="what runs the network: auto = OpenVINO on a CPU running fp32, or bf16 natively, when "
                        "it is installed, torch otherwise; the exported network is cached (--backend-cache)")
    p.add_argument("--backend-cache", metavar="FOLDER",
                   help="folder of OpenVINO's exported networks (default: $BRAINMETSEG_CACHE/openvino, "
                        "~/.cache/brainmetseg/openvino); delete it to clear the cache")
    p.add_argument("--inference-mode", default=SegmentConfig.inference_mode.value, choices=values(InferenceMode),
                   help="auto: one forward over the cropped brain when it fits --memory-budget, else large "
                        "windows; paper: the card's sliding window (128^3, 50%% overlap, averaged)")
    p.add_argument("--memory-budget", type=cli_float, metavar="MB",
                   help="memory the forward may use in auto mode, MiB (default: "
                        f"{AVAILABLE_FRACTION:g} x (available memory, cgroup limits included, - "
                        f"{PIPELINE_RESERVE_MB:.0f} MiB for the rest of the pipeline))")
    p.add_argument("--mirror", default=Mirroring.NONE.value, choices=values(Mirroring),
                   help="test-time mirroring: the network also sees the scan flipped left-right (lr, 2x its "
                        "time) or along every axis (all, 8x), logits averaged (default none; docs/speed.md)")
    p.add_argument("--grid-shifts", type=int, default=SegmentConfig.grid_shifts, choices=GRID_SHIFTS, metavar="N",
                   help="test-time grid shifts: the probability averaged over N model grids shifted by half a "
                        f"voxel ({', '.join(map(str, GRID_SHIFTS))}; default 1: off; N x the network's time): "
                        "outlines that depend less on where the head lies in the scanner (docs/longitudinal.md)")
    p.add_argument("--threshold", type=cli_float,
                   help="detection threshold: which components are lesions (default: the model card's)")
    p.add_argument("--outline-threshold", type=cli_float,
                   help="each lesion is drawn as its connected region above this probability, <= --threshold "
                        "(default: the model card's)")
    p.add_argument("--mode", choices=values(ScorerMode), default=None,
                   help="for a model with a candidate scorer: default (<= 0.5 false positives per case "
                        "on tuning phantoms) or sensitive (screening reads); candidates just below the "
                        "cut go to possible_lesions.csv for review")
    p.add_argument("--min-volume", type=cli_float, metavar="MM3",
                   help="drop predicted lesions smaller than this volume in mm^3 (default: the card's)")
    p.add_argument("--brain-mask", default=MaskMethod.DEEPBET.value, metavar="|".join(values(MaskMethod)) + "|PATH",
                   help="brain extraction: deepbet (default), none for skull-stripped input, or a mask file")
    p.add_argument("--overlap", type=cli_float,
                   help="sliding-window overlap in [0, 1) (default: the card's) for --inference-mode paper; "
                        "auto's whole-volume forward has no window (run.json warns when it was not used)")
    p.add_argument("--blend", choices=values(BlendMode),
                   help="how overlapping windows combine (--inference-mode paper, or auto's large windows)")
    p.add_argument("--format", choices=values(OutputFormat), help="image output format (default: like the input)")
    p.add_argument("--trust-header", action="store_true",
                   help="use an image whose header makes orientation or spacing untrustworthy (NIfTI pixdim "
                        "<= 0 or qform_code = sform_code = 0; MetaImage/NRRD spacing <= 0) as ITK reads it; "
                        "refused by default because a wrong orientation mirrors every lesion silently")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--dicom", metavar="seg,sr,rtstruct|all",
                   help="also write DICOM SEG / SR (TID 1500) / RTSTRUCT on the CE-T1's DICOM series")
    p.add_argument("--dicom-reference", metavar="FOLDER",
                   help="the CE-T1's DICOM series folder, when the CE-T1 is given as another format")
    p.add_argument("--progress", default=ProgressMode.BAR.value, choices=values(ProgressMode))
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    cohort.add_arguments(p)


def read_manifest(path: str) -> list[CaseInputs]:
    """Cases from a manifest CSV (columns :data:`~BrainMetSegLib.sequences.MANIFEST_COLUMNS`;
    ``image`` is taken for ``t1ce``)."""
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

        case_id = row.get("case_id") or None
        if case_id is not None:
            check_case_id(case_id, f"{p}, line {n}")
        cases.append(CaseInputs(resolve(image), resolve(row.get("t1")), resolve(row.get("t2")),
                                resolve(row.get("flair")), case_id))
    return cases


def check_case_id(case_id: str, where: str) -> None:
    """A case id names one sub-folder of the output folder: refuse anything that could leave it
    (``..``, an absolute path, a path separator, control characters)."""
    bad = (case_id in (".", "..") or "/" in case_id or "\\" in case_id or Path(case_id).is_absolute()
           or any(ord(c) < 32 for c in case_id) or len(case_id) > 200)
    if bad:
        raise InputError(f"{where}: case_id {case_id!r} is not a plain folder name (no '/', '\\', '..', "
                         "control characters; at most 200 characters); outputs must stay inside -o.")


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


def _dicom_export(args, case: CaseInputs, folder: Path, batch: bool):
    """The DICOM export ``--dicom`` asks for (``BrainMetSegLib.dicom``, imported only then)."""
    if not (args.dicom or args.dicom_reference):
        return None
    if args.dicom_reference and batch:
        raise InputError("--dicom-reference names one case's series; in batch mode give DICOM folders "
                         "as the CE-T1 inputs.")
    try:
        from ..dicom import plan_export
    except ImportError as exc:
        raise InputError(f"--dicom needs the dicom extra ({exc.name} is missing): "
                         "pip install 'BrainMetSegLib[dicom]'.") from None
    return plan_export(args.dicom, args.dicom_reference, case.t1ce, folder, args.overwrite)


def _summary_target(out: Path, args) -> Path:
    """The run's summary file (``summary.csv``, or its shard's), unless that file is one of the run's inputs."""
    target = out / cohort.summary_name(cohort.parse_shard(args.shard) if args.shard else None)
    if target.exists() and any(Path(f).exists() and os.path.samefile(target, f) for f in _inputs_of(args)):
        raise OutputError(f"{target}: is an input of this run; choose another output folder "
                          "(inputs are never overwritten).")
    return target


def _inputs_of(args) -> list[str]:
    files = [*args.inputs, *(p for p in (args.t1, args.t2, args.flair, args.manifest) if p)]
    if args.manifest:
        files += [p for c in read_manifest(args.manifest) for p in c.given().values()]
    return files


def _protected(case: CaseInputs, args) -> list[str]:
    """Files the run reads, which no output may replace."""
    extra = [args.manifest] if args.manifest else []
    if args.brain_mask not in values(MaskMethod):
        extra.append(args.brain_mask)
    return [*case.given().values(), *extra]


def run(args) -> int:
    cases = _cases(args)
    batch = len(cases) > 1 or bool(args.manifest) or bool(args.shard)
    if batch:  # each case gets a sub-folder named by its id (manifest ids were checked per line)
        for c in cases:
            if not c.case_id:
                check_case_id(c.id, str(c.t1ce))
        _summary_target(Path(args.output), args)
    if not batch:  # report a missing file or a damaged DICOM slice before the model is loaded
        for seq, path in cases[0].given().items():
            if not Path(path).exists():
                raise InputError(f"{path}: {seq} file not found.")
            if Path(path).is_dir():
                check_dicom_folder(path)
    out = Path(args.output)
    config = SegmentConfig(model=args.model, device=args.device, precision=args.precision,
                           backend=args.backend, backend_cache=args.backend_cache,
                           threshold=args.threshold, min_volume_mm3=args.min_volume,
                           outline_threshold=args.outline_threshold, mode=args.mode,
                           brain_mask=args.brain_mask, overlap=args.overlap, blend_mode=args.blend,
                           trust_header=args.trust_header, inference_mode=args.inference_mode,
                           memory_budget_mb=args.memory_budget, mirror=args.mirror,
                           grid_shifts=args.grid_shifts)
    segmenter = Segmenter(config)
    job = cohort.BatchRun.from_args(args, out, segmenter.provenance()) if batch else None
    if not args.quiet and not segmenter.package.card.trained:
        print(f"brainmetseg segment: warning: {untrained_message(segmenter.package)}", file=sys.stderr)
    progress = reporter(args.progress, args.quiet)
    try:
        return _run_cases(cases, segmenter, out, job, progress, args)
    finally:
        getattr(progress, "close", lambda: None)()


def _decide_single(args, segmenter, case, folder: Path, ext: str) -> cohort.Decision:
    """``--skip-existing`` for one input: skip when -o holds this case's believed outputs."""
    decision = cohort.decide(case, folder, ext, segmenter.provenance(), args.overwrite)
    if not args.quiet:
        if decision.skip:
            print(f"{case.id}: outputs in {folder} are complete and up to date "
                  f"({decision.run.get('lesions', '?')} lesion(s)); skipped", file=sys.stderr)
        elif decision.reason:
            print(f"{case.id}: {decision.reason}", file=sys.stderr)
    return decision


def _run_cases(cases, segmenter, out: Path, job: cohort.BatchRun | None, progress, args) -> int:
    batch = job is not None
    plans = []
    for case in cases:
        ext = FORMATS[args.format] if args.format else format_family(case.t1ce)
        plans.append((case, out / case.id if batch else out, ext))
    if job:
        plans = job.select(plans)
    for position, (case, folder, ext) in enumerate(plans):
        t0 = time.perf_counter()
        overwrite = args.overwrite
        try:
            # One lock per output folder (per case in a batch, so shards can share -o): a second
            # run into the same folder fails here, before any work.
            dicom = _dicom_export(args, case, folder, batch)
            with output_folder_lock(folder):
                if job:
                    decision = job.start(position, len(plans), case, folder, ext)
                    if decision.skip:
                        job.skipped(case, decision.run, folder)
                        continue
                    overwrite = decision.overwrite
                elif args.skip_existing:  # one case: the same check, on -o itself
                    decision = _decide_single(args, segmenter, case, folder, ext)
                    if decision.skip:
                        return 0
                    overwrite = decision.overwrite
                check_outputs(folder, ext, overwrite, _protected(case, args),  # fail before any work
                              segmenter.scorer is not None)
                if dicom:
                    dicom.check()
                result = segmenter.run(case, progress)
                paths = write_result(result, folder, ext, overwrite, _protected(case, args))
                if dicom:
                    paths |= dicom.write(result)
                    if not result.n_lesions and not args.quiet:
                        said = "wrote the no-findings SR only" if "dicom_sr" in paths else "no DICOM object written"
                        print(f"{case.id}: no lesion: {said} (SEG/RTSTRUCT need a lesion)", file=sys.stderr)
        except BrainMetSegError as exc:
            # A cancel (SIGTERM, Slicer's Cancel) ends the whole batch, not just this case.
            if not batch or isinstance(exc, CancelledError):
                raise
            getattr(progress, "close", lambda: None)()
            job.failed(case, exc, time.perf_counter() - t0)
            if args.progress == ProgressMode.JSON:
                print(error_json(exc, case.id), flush=True)
            continue
        if not args.quiet:
            for note in result.warnings:
                print(f"brainmetseg segment: warning: {note}", file=sys.stderr)
        volume = sum(r["volume_mm3"] for r in result.table)
        if job:
            job.done(case, result, time.perf_counter() - t0)
        if args.progress == ProgressMode.JSON and not args.quiet:
            print(json.dumps({"type": "result", "case": case.id, "lesions": result.n_lesions,
                              "outputs": {k: str(p) for k, p in paths.items()},
                              "warnings": result.warnings}), flush=True)
        elif not args.quiet:
            print(f"{case.id}: {result.n_lesions} lesion(s), {volume:.1f} mm^3 -> {folder}", file=sys.stderr)
    if job:
        job.finish()
        return 1 if job.any_failed else 0
    return 0
