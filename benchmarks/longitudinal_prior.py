"""Prior-guided thresholding of follow-ups, with and without the prior (a measurement, not a test).

Synthetic series (``make_series``, default phantom options as the demo model's test set: 1 mm,
whole head) with one follow-up each. The follow-up is segmented once with the bundled demo
model; its probability map is thresholded (a) as ``segment`` does and (b) with the baseline's
ground-truth lesions (as if reviewed by a reader), registered by ``register_followup`` and
dilated 3 mm, as a hint (threshold x 0.5 there). Scored on the follow-up's ground truth with
any-overlap matching: sensitivity for lesions that persist from baseline and for new ones,
false positives per scan.

    python benchmarks/longitudinal_prior.py --cases 20 --seed 4000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.longitudinal.prior import PriorConfig, guided_labels, prior_region
from BrainMetSegLib.longitudinal.registration import register_followup
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from BrainMetSegLib.synth import SynthConfig, case_seed
from BrainMetSegLib.synth.followup import FollowupConfig, make_series


def score(pred: sitk.Image, truth: sitk.Image, persisting: set[int]) -> dict:
    p, t = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    hit = set(np.unique(t[(p > 0) & (t > 0)]).tolist()) - {0}
    gt = set(np.unique(t[t > 0]).tolist())
    fp = sum(1 for lid in np.unique(p[p > 0]) if not (t[p == lid] > 0).any())
    return {"persisting_hit": len(hit & persisting), "persisting": len(gt & persisting),
            "new_hit": len(hit - persisting), "new": len(gt - persisting), "fp": fp}


def write(rows: list[dict], args, segmenter) -> dict:
    summary = {}
    for mode in ("without", "with"):
        tot = {k: sum(r[mode][k] for r in rows) for k in rows[0][mode]}
        summary[mode] = {"persisting_sensitivity": f"{tot['persisting_hit']}/{tot['persisting']}",
                         "new_sensitivity": f"{tot['new_hit']}/{tot['new']}",
                         "fp_per_scan": round(tot["fp"] / len(rows), 2)}
    doc = {"command": f"python benchmarks/longitudinal_prior.py --cases {args.cases} --seed {args.seed} "
                      f"--factor {args.factor}", "cases_done": len(rows),
           "data": "synthetic phantoms (BrainMetSegLib.synth.followup, default options), demo model "
                   f"{segmenter.package.card.name} {segmenter.package.card.version}; prior = ground-truth baseline",
           "summary": summary, "cases": rows}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=4000)
    ap.add_argument("--factor", type=float, default=0.5)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_longitudinal_prior.json")))
    args = ap.parse_args()
    segmenter = Segmenter(SegmentConfig(device="cpu"))
    prior_cfg = PriorConfig(threshold_factor=args.factor)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.cases):
            t0 = time.perf_counter()
            seed = case_seed(args.seed, c)
            baseline, (fu,) = make_series(seed, SynthConfig(), 1, FollowupConfig())
            path = Path(tmp) / f"fu{c}.nii.gz"
            sitk.WriteImage(fu.case.image, str(path))
            result = segmenter.run(str(path))
            plain = lesion_labels(result.probability, OperatingPoint(segmenter.threshold, segmenter.min_volume))
            reg = register_followup(baseline.image, sitk.Cast(fu.case.image, sitk.sitkFloat32))
            region = prior_region(baseline.labels, fu.case.image, reg, prior_cfg.margin_mm)
            guided = guided_labels(result.probability, region, segmenter.operating_point, prior_cfg)
            persisting = {lid for lid, b in fu.correspondence.items() if b is not None}
            row = {"case": c, "case_seed": seed, "scenario": fu.scenario,
                   "without": score(plain, fu.case.labels, persisting),
                   "with": score(guided, fu.case.labels, persisting)}
            rows.append(row)
            print(f"case {c} ({time.perf_counter() - t0:.0f} s): {row['scenario']} without {row['without']} "
                  f"with {row['with']}", flush=True)
            summary = write(rows, args, segmenter)  # after every case: a slow run can be read while it goes
    print(json.dumps(summary, indent=2))



if __name__ == "__main__":
    main()
