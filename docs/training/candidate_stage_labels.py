"""Label maps of the candidate stage on cached probability maps, and a manifest for
``brainmetseg evaluate`` (volumes, diameters and Dice per size bin; docs/training/candidate_stage.md).

Usage::

    python docs/training/candidate_stage_labels.py CACHE_DIRS... --synth PREFIX:DIR... \
        [--model brainmetseg-demo] [--mode default] -o OUT
    brainmetseg evaluate --manifest OUT/manifest.csv -o OUT/evaluation

CACHE_DIRS hold one folder per case from docs/training/candidate_data.py (probability map and
the dilated brain mask the pipeline gated it with); --synth pairs PREFIX:DIR name the phantoms
(imagesTr, instancesTr) of the case folders called PREFIX + case id. Each case goes through
:func:`BrainMetSegLib.candidate_stage.apply_scorer` with the model's scorer, mode and outline
threshold, exactly as ``segment`` runs it after the network; OUT/<case>.nii.gz is its label map.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import SimpleITK as sitk

from BrainMetSegLib.candidate_stage import apply_scorer
from BrainMetSegLib.models import DEFAULT_MODEL, load_package
from BrainMetSegLib.options import ScorerMode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("caches", type=Path, nargs="+")
    p.add_argument("--synth", nargs="+", required=True, metavar="PREFIX:DIR")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--mode", choices=[m.value for m in ScorerMode], default=ScorerMode.DEFAULT.value)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args()
    package = load_package(args.model)
    scorer = package.load_scorer()
    if scorer is None:
        sys.exit(f"{args.model}: the model card names no candidate scorer.")
    synth = dict(item.split(":", 1) for item in args.synth)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in sorted(f.parent for d in args.caches for f in d.glob("*/probability.nii.gz")):
        prefix = max((k for k in synth if folder.name.startswith(k)), key=len)
        cid, phantoms = folder.name[len(prefix):], Path(synth[prefix])
        image = phantoms / "imagesTr" / f"{cid}_0000.nii.gz"
        labels, table, possible, n = apply_scorer(
            sitk.ReadImage(str(folder / "probability.nii.gz")), sitk.ReadImage(str(image), sitk.sitkFloat32),
            sitk.ReadImage(str(folder / "brain.nii.gz")), scorer, ScorerMode(args.mode),
            package.card.outline_threshold)
        pred = args.output / f"{folder.name}.nii.gz"
        sitk.WriteImage(labels, str(pred))
        rows.append({"case_id": folder.name, "pred": str(pred.resolve()),
                     "gt": str((phantoms / "instancesTr" / f"{cid}.nii.gz").resolve()), "image": str(image.resolve())})
        print(f"{folder.name}: {n} candidates, {len(table)} lesions, {len(possible)} possible", flush=True)
    with open(args.output / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
