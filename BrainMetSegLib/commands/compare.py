"""``brainmetseg compare``: follow lesions from a baseline through follow-ups; RANO-BM response.

Each argument is a ``segment`` result folder, or a scan (segmented on the way with --model),
or, with ``--labels``, a scan whose label map is given. The pipeline is
:mod:`BrainMetSegLib.longitudinal.series`; the files are :mod:`BrainMetSegLib.longitudinal.outputs`'s.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..options import (
    EQUIVOCAL_BELOW_LESION_PROBABILITY,
    GRID_SHIFTS,
    Device,
    Diameters,
    MaskMethod,
    ProgressMode,
    values,
)


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
    p.add_argument("--device", default=Device.AUTO.value, choices=values(Device))
    p.add_argument("--brain-mask", default=MaskMethod.DEEPBET.value, metavar="|".join(values(MaskMethod)) + "|PATH",
                   help="brain extraction for scans segmented on the way")
    p.add_argument("--grid-shifts", type=int, default=1, choices=GRID_SHIFTS, metavar="N",
                   help="test-time grid shifts for scans segmented on the way (segment --grid-shifts; "
                        "default 1: off); result folders must have been segmented with the same N")
    p.add_argument("--prior", action="store_true",
                   help="every time point with the other time points' lesions (registered, dilated by 3 mm) as a "
                        "hint: a model with a candidate stage makes its possible lesions there lesions (from the "
                        "sensitive cut); otherwise the threshold there is lowered by --prior-factor")
    p.add_argument("--prior-factor", type=float, default=0.5,
                   help="without a candidate stage: threshold inside the prior lesions = the model's threshold x "
                        "this (default 0.5)")
    p.add_argument("--diameters", default=Diameters.OUTLINE.value, choices=values(Diameters),
                   help="where lesions are measured: image = on the CE-T1 image's edge (half-maximum of the "
                        "lesion's enhancement over its surroundings) where it holds, else on the probability "
                        "outline; outline = the probability outline only (default: %(default)s)")
    p.add_argument("--contact", type=float, default=1.5, metavar="MM",
                   help="a follow-up lesion within this distance of a tracked lesion's extent is that lesion "
                        "(default 1.5 mm)")
    p.add_argument("--max-distance", type=float, default=8.0, metavar="MM",
                   help="largest centroid distance for matching lesions left without contact (default 8 mm)")
    p.add_argument("--equivocal-below", type=float, default=EQUIVOCAL_BELOW_LESION_PROBABILITY, metavar="P",
                   help="a new lesion whose calibrated lesion probability (the candidate stage's) is below P is "
                        "equivocal, as a small one is: 'PD to be confirmed' until a later scan shows it "
                        "(default %(default)s; 0: off)")
    p.add_argument("--force", metavar="REASON", default=None,
                   help="compare time points that look like another patient, model or settings; the reason is "
                        "recorded with the result")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--progress", default=ProgressMode.BAR.value, choices=values(ProgressMode))
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")



def request_from(args):
    from ..longitudinal.series import CompareRequest

    def tup(v):
        return None if v is None else tuple(v)

    return CompareRequest(tuple(args.inputs), args.output, tup(args.labels), tup(args.names), tup(args.days),
                          args.model, args.device, args.brain_mask, args.prior, args.prior_factor, args.contact,
                          args.max_distance, args.force, args.overwrite, args.diameters, args.equivocal_below,
                          args.grid_shifts)


def run(args) -> int:
    from ..longitudinal.outputs import check_before_work, write_comparison
    from ..longitudinal.rano import CAUTION, RESPONSE_WORDS
    from ..longitudinal.series import check_request, run_comparison
    from ..progress import reporter

    request = request_from(args)
    check_before_work(request, check_request(request))  # fail before any work
    t0 = time.perf_counter()
    progress = reporter(args.progress, args.quiet)
    outcome = run_comparison(request, progress)
    out = write_comparison(outcome, args.overwrite)
    result = outcome.result
    if args.progress == ProgressMode.JSON and not args.quiet:
        print(json.dumps({"type": "result", "output": str(out), "tracks": len(result.tracks),
                          "responses": [r.response for r in result.rano.timepoints],
                          "warnings": outcome.warnings, "forced": outcome.forced}), flush=True)
    elif not args.quiet:
        lines = [f"warning: {w}" for w in outcome.warnings]
        if outcome.forced:
            lines.append(f"compared although refused (--force: {outcome.forced['reason']}): "
                         + "; ".join(outcome.forced["overrode"]))
        lines.append(f"{len(result.tracks)} lesion(s) tracked over {len(outcome.timepoints)} time points "
                     f"({time.perf_counter() - t0:.1f} s); RANO-BM radiographic response (no steroid/clinical data):")
        for r in result.rano.timepoints:
            words = f" ({RESPONSE_WORDS[r.response]})" if r.response in CAUTION else ""
            change = "" if r.change_from_baseline_pct is None else f"{r.change_from_baseline_pct:+.1f} % vs baseline"
            lines.append(f"  {result.timepoints[r.index].name}: {r.response}{words} "
                         f"(target sum {r.target_sum_mm:.1f} mm, {change})")
        lines.append(f"report: {Path(out) / 'report.html'}")
        print("\n".join(lines), file=sys.stderr)
    return 0
