"""``brainmetseg evaluate``: compare predictions with ground truth; tables and an HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..options import ProgressMode, values
from ..progress import reporter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", metavar="PRED_DIR",
                        help="predictions: <case>/lesion_labels.nii.gz (+ probability, run.json) as written by "
                             "'brainmetseg segment', or flat <case>.nii.gz (+ <case>_probability.nii.gz)")
    parser.add_argument("--gt", metavar="GT_DIR", help="ground truth <case>.nii.gz (binary or instance labels)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for tables and report.html")
    parser.add_argument("--manifest", metavar="CSV",
                        help="CSV with case_id,pred,gt[,probability,brain_mask,image,run_json] instead of folders")
    parser.add_argument("--brain-masks", metavar="DIR", help="brain masks <case>.nii.gz: voxel metrics inside them")
    parser.add_argument("--images", metavar="DIR",
                        help="CE-T1 images (<case>_0000.nii.gz or <case>.nii.gz) for the report's thumbnails")
    parser.add_argument("--clinical", metavar="CSV", help="clinical table: case_id plus any columns")
    parser.add_argument("--subgroup", action="append", default=[], metavar="COL[:CUT]",
                        help="compare subgroups of a clinical column: sex, age:60 (< 60 vs >= 60), "
                             "primary:lung (lung vs other); repeatable")
    from ..evaluate.lesionwise import RULES

    parser.add_argument("--match", choices=RULES, default="overlap",
                        help="lesion matching rule (default: overlap)")
    parser.add_argument("--threshold", type=float, default=None, metavar="F",
                        help="re-threshold probability maps at F (probability > F) instead of using the label maps")
    parser.add_argument("--min-volume", type=float, default=0.0, metavar="MM3",
                        help="with --threshold: drop predicted lesions smaller than this (mm^3)")
    parser.add_argument("--outline-threshold", type=float, default=None, metavar="F",
                        help="with --threshold: draw each detected lesion out to its connected region of "
                             "probability > F (<= --threshold), as segment does with a card's outline threshold")
    parser.add_argument("--select-threshold", nargs="?", const="lesion-f1", default=None,
                        choices=("youden", "voxel-f1", "lesion-f1"),
                        help="treat the cohort as a development set and write suggested_threshold.json "
                             "(criterion: lesion-f1 (default), voxel-f1 or youden)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="evaluate the cases that pair up even if some prediction or GT is missing")
    parser.add_argument("--no-report", action="store_true", help="write the tables only")
    parser.add_argument("--title", default="BrainMetSeg evaluation", help="heading of report.html")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--progress", choices=values(ProgressMode), default=ProgressMode.BAR.value)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvaluationConfig, evaluate_cohort, write_outputs
    from ..evaluate.cohort import SubgroupSpec, read_clinical
    from ..evaluate.pairing import find_cases
    from ..evaluate.runner import planned_outputs
    from ..staging import check_writable

    try:
        config = EvaluationConfig(match=args.match, threshold=args.threshold, min_volume_mm3=args.min_volume,
                                  outline_threshold=args.outline_threshold)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    outdir = Path(args.output)
    for path in planned_outputs(outdir, bool(args.select_threshold)):  # fail before the work, not after
        check_writable(path, args.overwrite, create=False)  # made when written: a failed run leaves none
    cases, problems = find_cases(args.pred, args.gt, args.manifest, args.brain_masks, args.images)
    hard = [str(p) for p in problems if p.blocking]
    if hard and not args.skip_missing:
        raise InputError("some cases do not pair up (pass --skip-missing to evaluate the rest):\n  "
                         + "\n  ".join(hard))
    for p in problems:
        print(f"brainmetseg evaluate: warning: {p}", file=sys.stderr)
    clinical = read_clinical(args.clinical) if args.clinical else {}
    subgroups = [SubgroupSpec.parse(s) for s in args.subgroup]
    if subgroups and not clinical:
        raise InputError("--subgroup needs --clinical CSV.")
    progress = reporter(args.progress)
    result = evaluate_cohort(cases, config, clinical, subgroups, args.select_threshold, progress)
    result.problems = problems
    written = write_outputs(result, outdir, overwrite=args.overwrite, report=not args.no_report,
                            title=args.title)
    for line in result.failed:
        print(f"brainmetseg evaluate: case failed: {line}", file=sys.stderr)
    if args.progress == ProgressMode.JSON:
        import json

        print(json.dumps({"type": "result", "cases": len(result.cases), "failed": len(result.failed),
                          "outputs": {k: str(v) for k, v in written.items()}}))
    elif args.progress == ProgressMode.BAR:
        by = {s["metric"]: s for s in result.summary}
        print(f"{len(result.cases)} cases: median Dice {by['dice']['median']:.3f}, "
              f"lesion sensitivity {by['lesion_sensitivity']['median']:.3f}, "
              f"FP/case {by['fp_lesions']['mean']:.2f}; report: {written.get('report.html', outdir)}",
              file=sys.stderr)
    if result.failed:
        raise InputError(f"{len(result.failed)} case(s) failed (listed above and in the report); "
                          f"outputs for the others are in {outdir}.")
    return 0
