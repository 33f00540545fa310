"""Lesions the candidate stage keeps under its cut for their size (the >= 10 mm rule), on phantoms:
each one's size, lesion probability, the true lesions it touches and the share of each true
lesion's volume it covers (what ``segment``'s "kept ... for its size ... check it" warning names).

    python benchmarks/kept_below_cut.py PHANTOMS [--json OUT.json]

PHANTOMS: a ``brainmetseg synth`` folder (imagesTr/, instancesTr/); the default model, as
``segment`` runs it. Synthetic data only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def kept_rows(result, truth: np.ndarray, cut: float, case: str) -> list[dict]:
    """One row per lesion of ``result`` under ``cut``; ``truth``: the phantom's instance map
    ((Z, Y, X), same grid as the result's labels)."""
    labels = sitk.GetArrayFromImage(result.labels)
    rows = []
    for row in result.table:
        if row["lesion_probability"] >= cut:
            continue
        sel = labels == row["lesion_id"]
        ids = [int(i) for i in np.unique(truth[sel]) if i]
        rows.append({"case": case, "lesion": int(row["lesion_id"]),
                     "axial_longest_mm": round(float(row["axial_longest_diameter_mm"]), 1),
                     "lesion_probability": round(float(row["lesion_probability"]), 2), "true_ids": ids,
                     "true_volume_covered": [round(float((sel & (truth == i)).sum() / (truth == i).sum()), 2)
                                             for i in ids]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phantoms")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    segmenter = Segmenter(SegmentConfig(device="cpu"))
    if segmenter.scorer is None:
        raise SystemExit("the default model has no candidate stage: nothing is kept under a cut")
    cut = segmenter.scorer.modes[segmenter.mode].cut
    images = sorted((Path(args.phantoms) / "imagesTr").glob("*_0000.nii.gz"))
    rows = []
    for image in images:
        case = image.name[: -len("_0000.nii.gz")]
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(args.phantoms) / "instancesTr" / f"{case}.nii.gz")))
        for row in kept_rows(segmenter.run(str(image)), truth, cut, case):
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"phantoms": len(images), "cut": cut, "kept_under_cut": len(rows),
               "true": sum(bool(r["true_ids"]) for r in rows), "false": sum(not r["true_ids"] for r in rows)}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"command": "python benchmarks/kept_below_cut.py PHANTOMS",
                                               "summary": summary, "lesions": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
