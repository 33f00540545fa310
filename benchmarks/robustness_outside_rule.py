"""The candidate stage's outside-the-brain rule, measured on the robustness benchmark's cached
results (docs/robustness.md, "False lesions outside the brain"), without re-segmenting.

    PYTHONPATH=$PWD nice -n 5 python benchmarks/robustness_outside_rule.py -o /work/data/rob6000_22 \
        --model-key brainmetseg-demo-2.2.0-3bcc6c165810-03ca6f51e91f --masks /tmp/outside_masks \
        --json benchmarks/results/robustness_demo_2.2.x_outside_rule.json --markdown /tmp/outside.md

For each case and variant cached by ``benchmarks/robustness.py`` (OUT/results/<model key>/
<variant>/<case>.labels.nii.gz, the lesion labels on the re-acquired scan's grid), the scan is
re-acquired from its phantom and preprocessed as the pipeline does (deepbet; nothing else runs),
and deepbet's brain mask *before* dilation is mapped onto the scan's grid
(:attr:`~BrainMetSegLib.preprocess.Preprocessed.brain_undilated`, ``Geometry.to_input``,
nearest: the pipeline's own path); cached in MASKS/<variant>/<case>.nii.gz. Each lesion's
fraction of voxels outside it (:func:`~BrainMetSegLib.candidate_stage.outside_fractions`) is
recorded with whether it is true (overlaps a truth lesion, as ``robustness.score`` counts).
A lesion above ``--cut`` (default: the library's
:data:`~BrainMetSegLib.candidate_stage.OUTSIDE_BRAIN_MAX_FRACTION`) is what the candidate stage
now lists as possible: the label map less those lesions is scored again with ``robustness.score``
and summarised with ``robustness.summarise`` (same columns as the benchmark's table). Exact for
the rule because it only removes whole lesions the stage had reported (voxel for voxel the
candidates it scored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import VARIANTS, markdown, model_key, score, summarise  # noqa: E402

from BrainMetSegLib.candidate_stage import OUTSIDE_BRAIN_MAX_FRACTION, outside_fractions  # noqa: E402
from BrainMetSegLib.geometry import Grid  # noqa: E402
from BrainMetSegLib.synth.dataset import case_paths  # noqa: E402
from BrainMetSegLib.synth.reacquire import reacquire  # noqa: E402


def undilated_mask(segmenter, scan: sitk.Image) -> sitk.Image:
    """deepbet's brain mask before dilation on ``scan``'s grid (uint8), as the pipeline makes it."""
    from BrainMetSegLib.preprocess import preprocess

    pre = preprocess([scan], segmenter.preprocess_config)
    return pre.geometry.to_input(pre.brain_undilated.astype(np.uint8), linear=False)


def case_rows(segmenter, out: Path, masks: Path, key: str, variant: str, cid: str, cut: float):
    """(cached row re-scored with the rule, per-lesion rows) of one case as one variant."""
    paths = case_paths(out / "phantoms", cid)
    image, truth, brain = (sitk.ReadImage(str(paths[k])) for k in ("image", "instances", "brain"))
    mask_path = masks / variant / f"{cid}.nii.gz"
    if not mask_path.exists():  # the scan as the benchmark made it (its grid is the mask's)
        scan = reacquire({"image": image, "brain": brain}, VARIANTS[variant], labels=("brain",))["image"]
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(undilated_mask(segmenter, scan), str(mask_path))
    mask_image = sitk.ReadImage(str(mask_path))
    mask = sitk.GetArrayFromImage(mask_image) > 0
    cached = out / "results" / key / variant / f"{cid}.labels.nii.gz"
    labels = sitk.ReadImage(str(cached))
    lab = sitk.GetArrayFromImage(labels).astype(np.int32)
    fraction = outside_fractions(lab, mask)
    on_truth = sitk.GetArrayFromImage(sitk.Resample(labels, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                    sitk.sitkUInt32))
    gt = sitk.GetArrayFromImage(truth)
    lesions = [{"variant": variant, "case": cid, "id": i, "voxels": int((lab == i).sum()),
                "true": bool((gt[on_truth == i] > 0).any()), "outside_undilated_mask": round(float(fraction[i - 1]), 4)}
               for i in range(1, len(fraction) + 1) if (lab == i).any()]
    demoted = [r["id"] for r in lesions if r["outside_undilated_mask"] > cut]
    kept = sitk.GetImageFromArray(np.where(np.isin(lab, demoted), 0, lab).astype(np.uint32))
    kept.CopyInformation(labels)
    row = {"case": cid, "variant": variant, "model": key, "demoted": len(demoted),
           "demoted_true": sum(r["true"] for r in lesions if r["id"] in demoted),
           "warnings": json.loads(cached.with_name(f"{cid}.json").read_text())["warnings"],
           "seconds": 0.0, **score(kept, truth, brain, Grid.of(mask_image))}
    return row, lesions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True, help="the robustness benchmark's work folder")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--model-key", help="cached results of this model key (default: the default model's)")
    p.add_argument("--masks", help="where the undilated masks are cached (default OUT/masks)")
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "reformat3mm"))
    p.add_argument("--cut", type=float, default=OUTSIDE_BRAIN_MAX_FRACTION)
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    out = Path(args.output)
    segmenter = Segmenter(SegmentConfig())
    key = args.model_key or model_key(segmenter.package.card)
    masks = Path(args.masks) if args.masks else out / "masks"
    variants = [v for v in args.variants.split(",") if v]
    rows = {v: [] for v in variants}
    lesions: list[dict] = []
    for k in range(args.n):
        for v in variants:
            row, les = case_rows(segmenter, out, masks, key, v, f"synth_{k:03d}", args.cut)
            rows[v].append(row)
            lesions += les
            print(v, row["case"], json.dumps({x: row[x] for x in ("detected", "fp", "demoted", "demoted_true")}),
                  flush=True)
    summary = {v: {**summarise(r), "demoted": sum(x["demoted"] for x in r),
                   "demoted_true": sum(x["demoted_true"] for x in r)} for v, r in rows.items()}
    for v, s in summary.items():
        print(v, json.dumps(s))
    header = (f"Cached results of {key} re-scored with the outside-the-brain rule (cut {args.cut:g}); "
              f"{args.n} phantoms (`brainmetseg synth --isotropic-only`, cases synth_000...).")
    if args.json:
        Path(args.json).write_text(json.dumps({"model_key": key, "cut": args.cut, "n": args.n, "summary": summary,
                                               "rows": rows, "lesions": lesions}, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(summary, header))


if __name__ == "__main__":
    main()
