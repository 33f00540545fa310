"""Held-out evaluation of the candidate stage (docs/training/candidate_stage.md).

Usage::

    python docs/training/evaluate_candidate_stage.py CACHE_DIRS... --synth PREFIX:DIR... \
        --scorer Resources/Models/brainmetseg-demo/candidate_scorer.json -o OUT [--baseline 0.95 10 0.5]

CACHE_DIRS hold one folder per case from docs/training/candidate_data.py (probability map,
brain mask, run seconds, candidates.json); --synth pairs PREFIX:DIR name the phantoms
(instancesTr) of the case folders called PREFIX + case id (e.g. ":testA" "s6100_:testB").
Writes OUT/candidate_stage_metrics.json
(per mode: sensitivity per size bin with Wilson 95 % CIs, FP per case; the FROC curve; the
reliability diagram and expected calibration error; seconds per case) and OUT/candidate_stage.png.

The baseline is the card's rule on the same probability maps (detection threshold, minimum
volume mm^3, outline threshold), matched by the library's lesion matching (any overlap); on a
re-acquired scan (``candidate_data.py --slice-thickness``) its lesions are mapped onto the
phantom's grid first, as the candidates were. Where candidates.json records
``outside_phantom_brain``, each mode also counts its false positives lying mostly (> 0.5)
outside the phantom's brain mask (``fp_outside_brain``, the robustness benchmark's rule; the
pipeline's own outside-the-brain rule, on deepbet's undilated mask, is not applied here).

A scorer whose ``large_rule`` is ``axial_measurable`` needs each candidate's axial RANO-BM
measurability (its core's): candidates.json's ``rano_measurable`` where it holds it, else
recomputed from the cached probability map (the candidates drawn again at the record's
thresholds, which must give as many as it lists). Each mode reports the candidates kept only by the large rule
(``large_kept``: on lesions / false).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.candidate_stage import candidate_labels, candidate_measurable
from BrainMetSegLib.evaluate.stats import wilson_ci
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels_array
from BrainMetSegLib.plotting import pyplot
from BrainMetSegLib.scorer import MODES, load_scorer
from BrainMetSegLib.train.candidate_scorer import operating_curve, pool, reliability
from BrainMetSegLib.train.metrics import case_result

sys.path.insert(0, str(Path(__file__).parent))
from candidate_data import on_grid  # noqa: E402  (a script beside this one)

BINS = {"<3 mm": (0, 3), "3-10 mm": (3, 10), ">=10 mm": (10, 1e9), ">=5 mm": (5, 1e9),
        "3-5 mm": (3, 5), "all": (0, 1e9)}


def with_ci(detected: int, n: int) -> dict:
    lo, hi = wilson_ci(detected, n) if n else (float("nan"), float("nan"))
    return {"detected": detected, "lesions": n, "sensitivity": detected / n if n else float("nan"),
            "ci95_wilson": [round(lo, 3), round(hi, 3)]}


def summary_at(row: dict) -> dict:
    return {"cut": row["cut"], "fp_per_case": row["fp_per_case"],
            **{name: with_ci(*row[name]) for name in BINS}}


def baseline(cache: Path, gt_path: Path, point: OperatingPoint) -> dict:
    prob = sitk.ReadImage(str(cache / "probability.nii.gz"))
    labels = lesion_labels_array(sitk.GetArrayViewFromImage(prob), prob.GetSpacing(), point)
    gt = sitk.ReadImage(str(gt_path))
    labels = on_grid(labels, prob, gt)
    return case_result(sitk.GetArrayFromImage(gt), labels > 0, gt.GetSpacing(), gt.GetDirection())


def outside_fp(kept: np.ndarray, data, records: list[dict]) -> int | None:
    """Kept candidates overlapping no lesion and lying mostly outside the phantom's brain (None
    when the records do not say where the brain is)."""
    if not all("outside_phantom_brain" in r for r in records):
        return None
    outside = np.concatenate([np.asarray(r["outside_phantom_brain"], float) for r in records]) > 0.5
    return int((kept & (data.label == 0) & outside).sum())


def measurable_of(folder: Path, record: dict) -> np.ndarray:
    """(N,) bool axial RANO-BM measurability of a cached case's candidates (module docstring)."""
    if "rano_measurable" in record:
        return np.asarray(record["rano_measurable"], bool)
    prob = sitk.ReadImage(str(folder / "probability.nii.gz"))
    threshold, outline = float(record["candidate_threshold"]), record["outline_threshold"]
    labels = candidate_labels(prob, threshold, outline)
    out = candidate_measurable(labels, prob, threshold)
    if len(out) != len(record["features"]):
        raise SystemExit(f"{folder}: {len(out)} candidates drawn again, candidates.json lists "
                         f"{len(record['features'])}")
    return out


def plot(out: Path, curve: list[dict], base: dict, rel: list[dict], ece: float, modes: dict) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, style in (("all", "-"), ("3-10 mm", "--"), ("<3 mm", ":")):
        a.plot([r["fp_per_case"] for r in curve], [r[name][0] / max(r[name][1], 1) for r in curve], style,
               label=f"candidate stage, {name}")
    a.plot([base["fp_per_case"]], [base["all"]["sensitivity"]], "ks", label="card rule (baseline), all")
    for name, m in modes.items():
        a.plot([m["fp_per_case"]], [m["all"]["sensitivity"]], "o", label=f"mode {name}, all")
    a.set(xlabel="false positives per case", ylabel="sensitivity", xlim=(0, 5), ylim=(0, 1.02), title="FROC")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    b.plot([0, 1], [0, 1], "k:", lw=1)
    b.plot([r["predicted"] for r in rel], [r["observed"] for r in rel], "o-")
    for r in rel:
        b.annotate(str(r["count"]), (r["predicted"], r["observed"]), fontsize=7, xytext=(3, -10),
                   textcoords="offset points")
    b.set(xlabel="lesion probability (predicted)", ylabel="fraction that are lesions (observed)",
          title=f"reliability, ECE {ece:.3f}", xlim=(0, 1), ylim=(0, 1))
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("caches", type=Path, nargs="+")
    p.add_argument("--synth", nargs="+", required=True, metavar="PREFIX:DIR",
                   help="phantom folder of the cases whose cache folder is PREFIX + case id (PREFIX may be empty)")
    p.add_argument("--scorer", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--baseline", type=float, nargs=3, default=(0.95, 10.0, 0.5),
                   metavar=("THRESHOLD", "MIN_MM3", "OUTLINE"))
    args = p.parse_args()
    scorer = load_scorer(args.scorer)
    folders = sorted(f.parent for d in args.caches for f in d.glob("*/candidates.json"))
    records = [json.loads((f / "candidates.json").read_text()) for f in folders]
    data = pool(records)
    prob = scorer.probability(data.features)
    measurable = (np.concatenate([measurable_of(f, r) for f, r in zip(folders, records, strict=True)])
                  if scorer.needs_measurable else None)
    cuts = np.round(np.arange(0.0, 1.0001, 0.01), 2)
    curve = operating_curve(prob, data, cuts, BINS)
    modes = {}
    for name in MODES:
        lesion, possible = scorer.decide(name, prob, data.features, measurable)
        row = operating_curve(lesion.astype(float), data, np.array([0.5]), BINS)[0]  # the mode's own decision
        by_large = lesion & (prob < scorer.modes[name].cut)
        modes[name] = summary_at(row) | {"cut": scorer.modes[name].cut, "large_cut": scorer.modes[name].large_cut,
                                         "large_from_mm": scorer.large_from_mm, "large_rule": scorer.large_rule,
                                         "large_kept": {"on_lesions": int((by_large & (data.label > 0)).sum()),
                                                        "false": int((by_large & (data.label == 0)).sum())}}
        modes[name]["possible_per_case"] = float(possible.sum() / len(records))
        modes[name]["fp_outside_brain"] = outside_fp(lesion, data, records)
    base_cases = []
    synth = dict(item.split(":", 1) for item in args.synth)  # prefix -> phantom folder
    for f in folders:
        prefix = max((k for k in synth if f.name.startswith(k)), key=len)
        gt = Path(synth[prefix]) / "instancesTr" / f"{f.name[len(prefix):]}.nii.gz"
        base_cases.append(baseline(f, gt, OperatingPoint(*args.baseline)))
    lesions = [les for c in base_cases for les in c["lesions"]]
    diam = np.array([les["longest_diameter_mm"] for les in lesions])
    hit = np.array([les["detected"] for les in lesions])
    base = {"rule": dict(zip(("threshold", "min_volume_mm3", "outline_threshold"), args.baseline, strict=True)),
            "fp_per_case": sum(c["fp"] for c in base_cases) / len(base_cases),
            **{name: with_ci(int(hit[(diam >= lo) & (diam < hi)].sum()), int(((diam >= lo) & (diam < hi)).sum()))
               for name, (lo, hi) in BINS.items()}}
    rel, ece = reliability(prob, data.label)
    runs = [json.loads((f / "run.json").read_text()) for f in folders]
    seconds = [r["seconds"] + rec["feature_seconds"] for r, rec in zip(runs, records, strict=True)]
    result = {"cases": len(records), "candidates": len(prob), "candidates_on_lesions": int(data.label.sum()),
              "modes": modes, "baseline": base, "ece": ece, "reliability": rel,
              "seconds_per_case_median": float(np.median(seconds)),
              "feature_seconds_median": float(np.median([r["feature_seconds"] for r in records])),
              "froc": [{"cut": r["cut"], "fp_per_case": r["fp_per_case"], "all": r["all"], "3-10 mm": r["3-10 mm"],
                        "<3 mm": r["<3 mm"]} for r in curve],
              "scorer": str(args.scorer), "caches": [str(c) for c in args.caches]}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "candidate_stage_metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(args.output / "candidate_stage.png", curve, base, rel, ece, modes)
    print(json.dumps({k: v for k, v in result.items() if k not in ("froc", "reliability")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
