"""Time the candidate stage (``candidate_stage.apply_scorer``: candidates, features, scoring,
lesion and possible tables) on one case's saved inputs, to compare two checkouts.

    python benchmarks/bench_candidate_stage.py --save INPUTS [--image CE_T1]   # segment once, keep its inputs
    PYTHONPATH=OLD python benchmarks/bench_candidate_stage.py --load INPUTS --model OLD/Resources/Models/NAME
    PYTHONPATH=NEW python benchmarks/bench_candidate_stage.py --load INPUTS --model NEW/Resources/Models/NAME

``--save`` segments the image (default: the bundled sample) with the default model and writes
the probability map, the CE-T1, the gating and the undilated brain masks the stage received
(NRRD) into INPUTS; ``--load`` runs the stage on them ``--repeat`` times in this process and prints
the median seconds, the lesions, possible lesions and candidates (so both checkouts are seen to
give the same answer), with the CPU and the load average. Run the two checkouts alternately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import SimpleITK as sitk

NAMES = ("probability", "ce_t1", "brain", "brain_undilated")
SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Sample" / "sample_ce_t1.nii.gz"


def save(folder: Path, image: str) -> None:
    import BrainMetSegLib.pipeline as pipeline
    from BrainMetSegLib.pipeline_types import SegmentConfig

    folder.mkdir(parents=True, exist_ok=True)
    original = pipeline.apply_scorer

    def keep(probability, ce_t1, brain, scorer, mode, outline, brain_undilated=None):
        for name, im in zip(NAMES, (probability, ce_t1, brain, brain_undilated), strict=True):
            sitk.WriteImage(im, str(folder / f"{name}.nrrd"))
        return original(probability, ce_t1, brain, scorer, mode, outline, brain_undilated)

    pipeline.apply_scorer = keep
    pipeline.Segmenter(SegmentConfig(device="cpu")).run(image)


def load(folder: Path, model: str, repeat: int) -> dict:
    import BrainMetSegLib
    from BrainMetSegLib.candidate_stage import apply_scorer
    from BrainMetSegLib.models import load_package
    from BrainMetSegLib.options import ScorerMode
    from BrainMetSegLib.precision import cpu_features

    images = [sitk.ReadImage(str(folder / f"{name}.nrrd")) for name in NAMES]
    package = load_package(model)
    scorer = package.load_scorer()
    outline = package.card.outline_threshold
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, table, possible, n = apply_scorer(*images[:3], scorer, ScorerMode.DEFAULT, outline, images[3])
        seconds.append(time.perf_counter() - t0)
    return {"library": str(Path(BrainMetSegLib.__file__).parent), "median_s": round(statistics.median(seconds), 3),
            "seconds": [round(s, 3) for s in seconds], "lesions": len(table), "possible": len(possible),
            "candidates": n, "cpu": cpu_features().model, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="INPUTS", help="segment --image and keep the stage's inputs here")
    group.add_argument("--load", metavar="INPUTS", help="time the stage on inputs saved by --save")
    parser.add_argument("--image", default=str(SAMPLE), help="CE-T1 for --save (default: the bundled sample)")
    parser.add_argument("--model", default="brainmetseg-demo", help="package whose scorer runs (--load)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.save:
        save(Path(args.save), args.image)
        print(f"saved the candidate stage's inputs to {args.save}")
    else:
        print(json.dumps(load(Path(args.load), args.model, args.repeat)))


if __name__ == "__main__":
    main()
