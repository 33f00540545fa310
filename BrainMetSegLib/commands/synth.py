"""``brainmetseg synth``: write synthetic CE-T1 phantoms with metastases (nnU-Net raw layout)."""

from __future__ import annotations

import argparse
import json
import time

from ..errors import InputError
from ..options import (
    FOLLOWUP_INTERPOLATIONS,
    FOLLOWUP_MOTION,
    FOLLOWUP_SCENARIOS,
    SLICE_PLANE_NAMES,
    ProgressMode,
    values,
)


def _triple(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.replace("x", ",").split(",") if v.strip()]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give one number or three (x,y,z) in mm, e.g. 1,1,3")
    return tuple(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--cases", type=int, required=True, help="number of cases to write")
    p.add_argument("-o", "--output", required=True, help="output folder (nnU-Net raw layout)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; case k depends only on (seed, k)")
    p.add_argument("--start", type=int, default=0, help="index of the first case (to extend a dataset)")
    p.add_argument("--anatomy", choices=("auto", "mni152", "colin27"), default="auto")
    p.add_argument("--spacing", type=_triple, default=(1.0, 1.0, 1.0), metavar="MM",
                   help="output spacing in mm: one number or x,y,z (default 1)")
    p.add_argument("--spacing-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="draw each case's in-plane and slice spacing in [MIN, MAX] mm (overrides --spacing)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lesions", type=int, default=None, help="fixed number of lesions per case")
    g.add_argument("--stratum", choices=("1-3", "4-10", ">10"), default=None,
                   help="lesion-count stratum (default: drawn 41/30/29 %%)")
    p.add_argument("--diameter", type=float, nargs=2, default=(2.0, 30.0), metavar=("MIN", "MAX"),
                   help="lesion diameter range in mm (default 2 30)")
    p.add_argument("--patterns", default="nodular,ring,irregular",
                   help="comma-separated enhancement patterns (nodular, ring, irregular)")
    p.add_argument("--no-confounders", action="store_true", help="no enhancing vessels, dura, choroid plexus")
    p.add_argument("--no-skull", action="store_true", help="skull-stripped look")
    p.add_argument("--anisotropic", type=_triple, default=None, metavar="MM",
                   help="simulate a thick-slice acquisition, e.g. 1,1,3 (default: 25 %% of cases, random)")
    p.add_argument("--isotropic-only", action="store_true", help="never simulate thick slices")
    p.add_argument("--no-acquisition", action="store_true",
                   help="no bias field, noise, blur or random scaling (clean images)")
    p.add_argument("--field-of-view", choices=("head", "brain"), default="head")
    p.add_argument("--deformation", type=float, default=1.0, help="scale of the random deformation (0 = none)")
    p.add_argument("--oblique", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="write each case on a grid tilted A degrees about x, then B about y (oblique planes)")
    p.add_argument("--slice-thickness", type=float, default=None, metavar="MM",
                   help="write each case as 2D slices MM thick (slab-averaged), e.g. 5")
    p.add_argument("--in-plane", type=float, default=None, metavar="MM",
                   help="in-plane spacing with --slice-thickness (default: --spacing's x)")
    p.add_argument("--slice-plane", choices=SLICE_PLANE_NAMES, default="axial",
                   help="the plane of the --slice-thickness slices (default axial)")
    p.add_argument("--preview", action="store_true", help="also write preview/<case>.png contact sheets")
    p.add_argument("--dicom", action="store_true",
                   help="also write each image as a DICOM MR series folder, dicom/<case>/ (follow-ups: "
                        "dicom/<case>_fu<k>/): one synthetic patient per case, one study per scan, "
                        "the NIfTI's geometry and values (to test a PACS route or a DICOM reader)")
    p.add_argument("--followups", type=int, default=0, metavar="K",
                   help="also write K follow-up scans per case into followups/ (moved head, lesions grown, "
                        "shrunk, gone or new; truth: correspondence, transform, RANO-BM response)")
    p.add_argument("--followup-scenario", default="auto", choices=("auto", *FOLLOWUP_SCENARIOS),
                   help="how lesions change at each follow-up (default: drawn per follow-up; repeat: a "
                        "rescan, every lesion unchanged, never drawn)")
    p.add_argument("--followup-motion", nargs=2, type=float, metavar=("DEG", "MM"),
                   default=FOLLOWUP_MOTION,
                   help="head movement at each follow-up, drawn within +-DEG degrees about each axis and +-MM mm "
                        "along each (default %(default)s; 0 0: the head where it was)")
    p.add_argument("--followup-interpolation", choices=FOLLOWUP_INTERPOLATIONS, default=FOLLOWUP_INTERPOLATIONS[0],
                   help="how each follow-up's moved head is put on the grid: linear (default, as so far; blurs "
                        "edges by up to half a voxel) or cubic (a spline, nearly no blur)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--progress", choices=values(ProgressMode), default=ProgressMode.BAR.value)


def _followup_config(args: argparse.Namespace):
    if not args.followups:
        asked = [name for name, given in (("--followup-scenario", args.followup_scenario != "auto"),
                                          ("--followup-motion", tuple(args.followup_motion) != FOLLOWUP_MOTION),
                                          ("--followup-interpolation",
                                           args.followup_interpolation != FOLLOWUP_INTERPOLATIONS[0]))
                 if given]
        if asked:
            raise InputError(f"{' and '.join(asked)}: only for follow-ups; add --followups K.")
        return None
    from ..synth.followup import FollowupConfig

    deg, mm = args.followup_motion  # FollowupConfig refuses what is out of range (NaN too)
    return FollowupConfig(scenario=args.followup_scenario, max_rotation_deg=deg, max_shift_mm=mm,
                          interpolation=args.followup_interpolation)


def run(args: argparse.Namespace) -> int:
    from ..progress import reporter
    from ..synth import SynthConfig, write_dataset

    patterns = tuple(s.strip() for s in args.patterns.split(",") if s.strip())
    aniso = False if args.isotropic_only else args.anisotropic
    if not 0 <= args.followups <= 10:
        raise InputError(f"--followups {args.followups}: give 0 to 10 follow-ups per case.")
    if args.cases < 1:
        raise InputError(f"-n {args.cases}: the number of cases must be at least 1.")
    config = SynthConfig(
        anatomy=args.anatomy, spacing_mm=args.spacing,
        spacing_range_mm=None if args.spacing_range is None else tuple(args.spacing_range),
        n_lesions=args.lesions, stratum=args.stratum,
        diameter_range_mm=tuple(args.diameter), patterns=patterns, confounders=not args.no_confounders,
        skull=not args.no_skull, anisotropic_acquisition=aniso, acquisition=not args.no_acquisition,
        field_of_view=args.field_of_view, deformation=args.deformation,
        oblique_deg=None if args.oblique is None else tuple(args.oblique),
        slice_thickness_mm=args.slice_thickness, in_plane_mm=args.in_plane, slice_plane=args.slice_plane,
    )
    progress = reporter(args.progress)
    t0 = time.perf_counter()
    desc = write_dataset(args.output, args.cases, seed=args.seed, config=config, progress=progress,
                         overwrite=args.overwrite, preview=args.preview, start=args.start,
                         followups=args.followups, followup_config=_followup_config(args), dicom=args.dicom)
    elapsed = time.perf_counter() - t0
    if args.progress == ProgressMode.JSON:
        print(json.dumps({"type": "result", "output": str(args.output), "cases": args.cases,
                          "seconds": round(elapsed, 2)}))
    else:
        times = desc["seconds_per_case"]
        later = f", then {sum(times[1:]) / len(times[1:]):.1f} s per case" if len(times) > 1 else ""
        print(f"wrote {args.cases} cases to {args.output} in {elapsed:.1f} s (first case {times[0]:.1f} s "
              f"including template preparation{later})")
    return 0
