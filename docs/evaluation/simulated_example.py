"""Report example with SIMULATED predictions (ground truth perturbed, no model involved).

Shows what `brainmetseg evaluate` produces before the demo model exists. The
predictions are made from each synthetic case's instance map: lesions are found
with a size-dependent probability (small ones missed more often), outlines are
blurred and shifted, and a few false positives are added inside the brain. The
report is titled accordingly; the figures say nothing about any model.

    python docs/evaluation/simulated_example.py SYNTH_DIR WORKDIR [--seed 7]

SYNTH_DIR is a `brainmetseg synth` output (imagesTr, labelsTr, instancesTr, brainmasksTr).
Writes WORKDIR/pred (segment layout), WORKDIR/eval (tables + report.html) and the
screenshot docs/evaluation/example_report_simulated.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

DETECT_P = {"<3": 0.45, "3-10": 0.85, ">=10": 0.98}


def simulate(instances: sitk.Image, brain: sitk.Image, rng: np.random.Generator) -> np.ndarray:
    """A probability map (float32, same grid) that finds most lesions and adds a few FPs."""
    lab = sitk.GetArrayFromImage(instances)
    br = sitk.GetArrayFromImage(brain) > 0
    spacing = np.asarray(instances.GetSpacing()[::-1])
    prob = np.zeros(lab.shape, np.float32)
    for idx, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None:
            continue
        mask = lab == idx
        extent = max((s.stop - s.start) * sp for s, sp in zip(box, spacing, strict=True))
        size = "<3" if extent < 3 else ("3-10" if extent < 10 else ">=10")
        if rng.random() > DETECT_P[size]:
            continue
        shifted = np.roll(mask, tuple(rng.integers(-1, 2, 3)), axis=(0, 1, 2))
        if rng.random() < 0.3:  # under-segmentation
            shifted = ndimage.binary_erosion(shifted) | (shifted & (rng.random(lab.shape) < 0.3))
        soft = ndimage.gaussian_filter(shifted.astype(np.float32), 0.8)
        prob = np.maximum(prob, soft / max(soft.max(), 1e-6) * rng.uniform(0.65, 0.98))
    # false positives: small enhancing blobs near the brain surface (vessel-like)
    surface = br & ~ndimage.binary_erosion(br, iterations=6)
    cand = np.argwhere(surface)
    for _ in range(rng.poisson(1.5)):
        c = cand[rng.integers(len(cand))]
        blob = np.zeros(lab.shape, np.float32)
        blob[tuple(c)] = 1
        blob = ndimage.gaussian_filter(blob, rng.uniform(0.8, 2.0) / spacing)
        prob = np.maximum(prob, blob / blob.max() * rng.uniform(0.4, 0.9))
    return prob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("synth", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pred_dir = args.work / "pred"
    cases = sorted(p.name[:-7] for p in (args.synth / "labelsTr").glob("*.nii.gz"))
    rows = ["case_id,anatomy,acquisition"]
    for cid in cases:
        inst = sitk.ReadImage(str(args.synth / "instancesTr" / f"{cid}.nii.gz"))
        brain = sitk.ReadImage(str(args.synth / "brainmasksTr" / f"{cid}.nii.gz"))
        prob = simulate(inst, brain, rng)
        out = pred_dir / cid
        out.mkdir(parents=True, exist_ok=True)
        p_img = sitk.GetImageFromArray(prob)
        p_img.CopyInformation(inst)
        sitk.WriteImage(p_img, str(out / "probability.nii.gz"))
        l_img = sitk.GetImageFromArray((prob > 0.5).astype(np.uint16))
        l_img.CopyInformation(inst)
        sitk.WriteImage(l_img, str(out / "lesion_labels.nii.gz"))
        (out / "run.json").write_text(json.dumps({"case": cid, "simulated": True}))
        info = json.loads((args.synth / "lesionsTr" / f"{cid}.json").read_text())["info"]
        thick = "acquired_spacing_mm" in info.get("acquisition", {})
        rows.append(f"{cid},{info.get('anatomy', '')},{'thick-slice' if thick else 'isotropic'}")
    (args.work / "clinical.csv").write_text("\n".join(rows) + "\n")
    subprocess.run(["brainmetseg", "evaluate", "--pred", str(pred_dir), "--gt", str(args.synth / "labelsTr"),
                    "--brain-masks", str(args.synth / "brainmasksTr"), "--images", str(args.synth / "imagesTr"),
                    "--clinical", str(args.work / "clinical.csv"), "--subgroup", "anatomy",
                    "--select-threshold", "-o", str(args.work / "eval"), "--overwrite", "--progress", "none",
                    "--title", "EXAMPLE - SIMULATED predictions (GT perturbed, no model) on synthetic cases"],
                   check=True)
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if chrome:
        shot = Path(__file__).resolve().parent / "example_report_simulated.png"
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,2400",
                            f"file://{(args.work / 'eval' / 'report.html').resolve()}"],
                           check=False, capture_output=True)
        print(f"screenshot: {shot}")


if __name__ == "__main__":
    main()
