"""Where the lesions missed on thick slices are lost (docs/robustness.md, "Why the sample at 7 mm
loses lesions"): at the network (no candidate) or at the candidate scorer.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/thick_slice_misses.py /work/data/i24/fresh7 \
        --synth /work/data/i24/fresh9900 --json benchmarks/results/thick_slice_misses_demo2.3.0_fresh9900_7mm.json

CACHE: a candidate cache of ``docs/training/candidate_data.py`` (CACHE/<case>/probability.nii.gz,
the network's map on the scan's grid, and candidates.json: features, and for each truth lesion
its diameter and the candidates touching it); SYNTH: the phantoms it was made from (their
instancesTr: the truth on the phantom's grid). Each truth lesion is put in one class:

- ``found``: a candidate touching it is a lesion in the mode (the scorer's cuts, as the
  pipeline decides; the outside-the-brain rule is not applied, as the candidate-stage
  evaluation does not);
- ``below_cut``: candidates touch it, the scorer put them below the mode's cut;
- ``network_weak``: no candidate, the network's highest probability inside the lesion (its map
  mapped onto the phantom's grid, nearest) in [``--weak``, candidate threshold): a lower
  candidate threshold could make it one;
- ``network_none``: no candidate and the network below ``--weak`` (default 0.1) inside it.

Prints and writes the counts per size (< 3, 3-10, >= 10 mm longest diameter) and each lesion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.candidates import FEATURES

SIZES = (("< 3 mm", 0.0, 3.0), ("3-10 mm", 3.0, 10.0), (">= 10 mm", 10.0, float("inf")))
CLASSES = ("found", "below_cut", "network_weak", "network_none")


def loss_class(confirmed: list[bool], network_max_p: float, candidate_threshold: float, weak: float) -> str:
    """Where one truth lesion was lost: ``confirmed`` says for each candidate touching it whether
    the mode made it a lesion; ``network_max_p`` the network's highest probability inside it."""
    if any(confirmed):
        return "found"
    if confirmed:
        return "below_cut"
    return "network_weak" if weak <= network_max_p < candidate_threshold else "network_none"


def case_lesions(case: Path, truth: sitk.Image, scorer, mode: str, weak: float) -> list[dict]:
    """One row per truth lesion of one cached case."""
    data = json.loads((case / "candidates.json").read_text())
    features = np.asarray(data["features"], np.float64).reshape(-1, len(FEATURES))
    p = scorer.probability(features) if len(features) else np.zeros(0)
    lesion = scorer.decide(mode, p, features)[0] if len(features) else np.zeros(0, bool)
    prob = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(case / "probability.nii.gz")), truth,
                                                sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    gt = sitk.GetArrayFromImage(truth)
    rows = []
    for les in data["lesions"]:
        max_p = float(prob[gt == les["id"]].max()) if (gt == les["id"]).any() else 0.0
        cands = les["candidates"]
        rows.append({"case": data["case"], "lesion": les["id"], "diameter_mm": round(les["diameter_mm"], 1),
                     "network_max_p": round(max_p, 3),
                     "lesion_probability": [round(float(p[c - 1]), 3) for c in cands],
                     "class": loss_class([bool(lesion[c - 1]) for c in cands], max_p, data["candidate_threshold"],
                                         weak)})
    return rows


def summary(rows: list[dict]) -> dict:
    """Counts of each class per size class and over all lesions."""
    out = {}
    for name, lo, hi in (*SIZES, ("all", 0.0, float("inf"))):
        sel = [r for r in rows if lo <= r["diameter_mm"] < hi]
        out[name] = {"lesions": len(sel), **{c: sum(r["class"] == c for r in sel) for c in CLASSES}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="candidate cache (docs/training/candidate_data.py)")
    p.add_argument("--synth", required=True, help="the phantoms it was made from")
    p.add_argument("--scorer", default="Resources/Models/brainmetseg-demo/candidate_scorer.json")
    p.add_argument("--mode", default="default")
    p.add_argument("--weak", type=float, default=0.1, help="network probability counted as weak, not none")
    p.add_argument("--json")
    args = p.parse_args()
    from BrainMetSegLib.scorer import load_scorer

    scorer = load_scorer(args.scorer)
    rows = []
    for case in sorted(c for c in Path(args.cache).iterdir() if (c / "candidates.json").exists()):
        cid = json.loads((case / "candidates.json").read_text())["case"]
        truth = sitk.ReadImage(str(Path(args.synth) / "instancesTr" / f"{cid}.nii.gz"))
        rows += case_lesions(case, truth, scorer, args.mode, args.weak)
    result = summary(rows)
    for name, counts in result.items():
        print(name, json.dumps(counts))
    if args.json:
        Path(args.json).write_text(json.dumps({"cache": args.cache, "scorer": args.scorer, "mode": args.mode,
                                               "weak": args.weak, "summary": result, "lesions": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
