"""Matching accuracy of ``brainmetseg compare`` on synthetic follow-up series (a measurement, not a test).

For each case: ``make_series`` gives a baseline and follow-ups with known correspondence (the
head moved rigidly, lesions grown / shrunk / gone / new). The lesion label maps fed to the
comparison are the ground truth either as is ("exact") or perturbed like a segmentation
("perturbed": each lesion's outline dilated or eroded by one voxel at random, lesions missed
with probability 1.0 under 3 mm / 0.3 for 3-10 mm / 0 from 10 mm (equivalent diameter), and
Poisson(0.6) false-positive blobs of 3-5 mm per scan), then relabelled as 26-connected
components, largest first, as ``segment`` writes them. Registration is always estimated.

Scoring per follow-up pair (baseline, follow-up k), on lesions the segmentation kept: every
predicted lesion is identified with the true lesion it overlaps most (or is a false positive);
a decision is correct when
- a true lesion present on both scans gets the same track on both;
- a true new lesion gets a new track;
- a true lesion that resolved has no lesion on the follow-up in its track.
The RANO-BM radiographic response from the comparison is also compared with the true one.

    python benchmarks/longitudinal_matching.py --cases 12 --followups 2 --seed 500 --spacing 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib.lesions import label_instances
from BrainMetSegLib.longitudinal import TimePoint, compare_timepoints
from BrainMetSegLib.synth import SynthConfig, case_seed
from BrainMetSegLib.synth.followup import FollowupConfig, make_series, true_response


def perturb(labels: sitk.Image, brain: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    lab = sitk.GetArrayFromImage(labels)
    sp = labels.GetSpacing()
    vvox = float(np.prod(sp))
    out = np.zeros(lab.shape, bool)
    for lid in np.unique(lab[lab > 0]):
        m = lab == lid
        d = (6 * m.sum() * vvox / np.pi) ** (1 / 3)
        p_miss = 1.0 if d < 3 else 0.3 if d < 10 else 0.0
        if rng.random() < p_miss:
            continue
        r = rng.random()
        if r < 0.33:
            m = ndimage.binary_dilation(m) & (sitk.GetArrayViewFromImage(brain) > 0)
        elif r < 0.66 and m.sum() > 30:
            m = ndimage.binary_erosion(m)
        out |= m
    brain_idx = np.argwhere(sitk.GetArrayViewFromImage(brain) > 0)
    zz, yy, xx = np.indices(lab.shape, sparse=True)
    for _ in range(rng.poisson(0.6)):
        c = brain_idx[rng.integers(len(brain_idx))]
        rad = rng.uniform(1.5, 2.5)
        ball = ((zz - c[0]) * sp[2]) ** 2 + ((yy - c[1]) * sp[1]) ** 2 + ((xx - c[2]) * sp[0]) ** 2 <= rad * rad
        if not (ball & (lab > 0)).any():
            out |= ball
    img = sitk.GetImageFromArray(label_instances(out, sp).astype(np.uint16))
    img.CopyInformation(labels)
    return img


def identify(pred: sitk.Image, truth: sitk.Image) -> dict[int, int | None]:
    """Predicted lesion id -> true lesion id it overlaps most (None: false positive)."""
    p, t = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    out = {}
    for lid in np.unique(p[p > 0]):
        under = t[p == lid]
        under = under[under > 0]
        out[int(lid)] = int(np.bincount(under).argmax()) if under.size else None
    return out


def score_pair(result, k: int, pred_maps, truth_labels, fu_truth) -> dict:
    """Decisions for the pair (baseline, follow-up k); true track ids = baseline ids, then new ids."""
    base_truth = identify(pred_maps[0], truth_labels[0])  # baseline ids are the true track ids
    fu_truth_ids = identify(pred_maps[k], truth_labels[k])
    track_of = {t: {} for t in (0, k)}
    for tr in result.tracks:
        for t in (0, k):
            for lid in tr.at[t].lesion_ids:
                track_of[t][lid] = tr
    on_base: dict[int, set[int]] = {}  # true track -> predicted tracks on the baseline
    for lid, g in base_truth.items():
        if g is not None:
            on_base.setdefault(g, set()).add(track_of[0][lid].track_id)
    on_fu: dict[int, list] = {}  # true track -> predicted tracks on follow-up k
    for lid, g in fu_truth_ids.items():
        if g is not None:
            on_fu.setdefault(fu_truth.track_of[g], []).append(track_of[k][lid])
    n_base = int(sitk.GetArrayViewFromImage(truth_labels[0]).max())
    kinds = {"persisting": [0, 0], "new": [0, 0], "resolved": [0, 0]}
    for g, trs in on_fu.items():
        if g <= n_base and g in on_base:
            kinds["persisting"][0] += {tr.track_id for tr in trs} == on_base[g]
            kinds["persisting"][1] += 1
        elif g > n_base:
            kinds["new"][0] += all(tr.new_at is not None for tr in trs)
            kinds["new"][1] += 1
    by_id = {tr.track_id: tr for tr in result.tracks}
    for g in fu_truth.resolved:
        if g in on_base:
            kinds["resolved"][0] += all(not by_id[t].at[k].seen for t in on_base[g])
            kinds["resolved"][1] += 1
    return {"correct": sum(v[0] for v in kinds.values()), "total": sum(v[1] for v in kinds.values()),
            **{f"{key}_correct": v[0] for key, v in kinds.items()},
            **{f"{key}_total": v[1] for key, v in kinds.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--followups", type=int, default=2)
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--spacing", type=float, default=2.0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_longitudinal_matching.json")))
    args = ap.parse_args()
    config = SynthConfig(anatomy="mni152", spacing_mm=args.spacing)
    rows = []
    for c in range(args.cases):
        seed = case_seed(args.seed, c)
        t0 = time.perf_counter()
        baseline, fus = make_series(seed, config, args.followups, FollowupConfig())
        truth_labels = [baseline.labels] + [f.case.labels for f in fus]
        truth_rano = true_response(baseline, fus)
        images = [baseline.image] + [f.case.image for f in fus]
        brains = [baseline.brain] + [f.case.brain for f in fus]
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, c, 7]))
        for mode in ("exact", "perturbed"):
            labels = truth_labels if mode == "exact" else [perturb(lab, b, rng) for lab, b in
                                                           zip(truth_labels, brains, strict=True)]
            tps = [TimePoint(f"t{k}", img, lab) for k, (img, lab) in enumerate(zip(images, labels, strict=True))]
            result = compare_timepoints(tps)
            for k in range(1, len(tps)):
                s = score_pair(result, k, labels, truth_labels, fus[k - 1])
                rows.append({"case": c, "case_seed": seed, "followup": k, "mode": mode, "scenario": fus[k - 1].scenario,
                             "lesions_baseline": len(baseline.lesions),
                             "lesions_followup": len(fus[k - 1].case.lesions),
                             **s, "response": result.rano.timepoints[k - 1].response,
                             "true_response": truth_rano.timepoints[k - 1].response})
        print(f"case {c}: {time.perf_counter() - t0:.1f} s; "
              + "; ".join(f"{r['mode']} fu{r['followup']} {r['correct']}/{r['total']} "
                          f"{r['response']}/{r['true_response']}"
                          for r in rows if r["case"] == c), flush=True)
    summary = {}
    for mode in ("exact", "perturbed"):
        sel = [r for r in rows if r["mode"] == mode]
        tot = {key: sum(r[key] for r in sel) for key in sel[0] if key.endswith(("_correct", "_total")) or
               key in ("correct", "total")}
        summary[mode] = {"pairs": len(sel), "decisions": tot["total"], "correct": tot["correct"],
                         "accuracy": tot["correct"] / max(tot["total"], 1),
                         **{k: f"{tot[k + '_correct']}/{tot[k + '_total']}" for k in ("persisting", "new", "resolved")},
                         "rano_agreement": f"{sum(r['response'] == r['true_response'] for r in sel)}/{len(sel)}"}
    doc = {"command": f"python benchmarks/longitudinal_matching.py --cases {args.cases} --followups {args.followups} "
                      f"--seed {args.seed} --spacing {args.spacing}",
           "data": "synthetic phantoms (MNI152 anatomy, BrainMetSegLib.synth.followup), not patient scans",
           "summary": summary, "pairs": rows}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
