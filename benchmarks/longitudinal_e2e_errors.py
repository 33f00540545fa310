"""Where the end-to-end follow-up benchmark's wrong responses come from (a measurement, not a test).

For a cache of ``benchmarks/longitudinal_e2e.py`` (phantoms, segmentations, registrations):

1. **The truth through the same logic.** Each patient's *true* label maps are compared exactly
   as the model's are (``run_comparison`` with ``labels``, what ``brainmetseg compare IMG...
   --labels TRUE...`` runs: the same registrations, matching and RANO-BM rules; diameters on the
   label maps). A response the truth gets right and the model's segmentation gets wrong is an
   error of the segmentation, not of the comparison.
2. **Lesions kept below the scorer's cut.** Runs of a model with a candidate stage keep a
   candidate whose core's longest *3D* diameter is >= ``large_from_mm`` (10 mm) from the lower
   ``large_cut`` on (``BrainMetSegLib.scorer``). Every lesion of the cache whose lesion
   probability is below the run's cut was kept by that rule; each is listed with its RANO-BM
   axial measurement (``lesions.rano_measurable``: longest axial >= 10 mm, perpendicular >= 5 mm,
   >= 2 axial slices) and whether it overlaps a true lesion.

    python benchmarks/longitudinal_e2e_errors.py --cache CACHE --seed 7300 \\
        --registrations CACHE/registrations --cases synth_000 synth_002 --out errors.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
import longitudinal_e2e as e2e  # noqa: E402  (the benchmark's truth and registration helpers)

from BrainMetSegLib.lesions import rano_measurable  # noqa: E402


def truth_through_compare(cache: Path, cid: str, followups: int, registrations: str | None) -> dict:
    """The true label maps compared like the model's: responses next to both truths'."""
    from BrainMetSegLib.longitudinal.series import CompareRequest, run_comparison

    phantoms = cache / "phantoms"
    truth = e2e.truth_of(phantoms, cid, followups)
    labels = [phantoms / "instancesTr" / f"{cid}.nii.gz"] + [
        phantoms / "followups" / f"{cid}_fu{k}_instances.nii.gz" for k in range(1, followups + 1)]
    args = argparse.Namespace(registrations=registrations, scores=None, cache=str(cache), followups=followups)
    request = CompareRequest(tuple(map(str, e2e.series_images(phantoms, cid, followups))),
                             str(cache / "cmp_truth" / cid), labels=tuple(map(str, labels)))
    outcome = run_comparison(request, registrations=e2e._saved_registrations(args, cid))
    return {"case": cid, "true_labels_through_compare": [r.response for r in outcome.result.rano.timepoints],
            "true": truth["responses"], "true_analytic": truth["responses_analytic"],
            "reasons": [r.reasons for r in outcome.result.rano.timepoints]}


def kept_below_cut(cache: Path) -> list[dict]:
    """Every lesion of the cache's segmentations whose lesion probability is below its run's cut."""
    phantoms, out = cache / "phantoms", []
    for folder in sorted(p for p in (cache / "seg").iterdir() if (p / "lesions.json").is_file()):
        stage = json.loads((folder / "run.json").read_text())["settings"].get("candidate_stage") or {}
        low = [row for row in json.loads((folder / "lesions.json").read_text())["lesions"]
               if stage and row.get("lesion_probability") is not None and row["lesion_probability"] < stage["cut"]]
        if not low:
            continue
        cid, k = folder.name.rsplit("_t", 1)
        truth = (phantoms / "instancesTr" / f"{cid}.nii.gz" if k == "0"
                 else phantoms / "followups" / f"{cid}_fu{k}_instances.nii.gz")
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lesion_labels.nii.gz")))
        true = sitk.GetArrayFromImage(sitk.ReadImage(str(truth)))
        for row in low:
            out.append({"scan": folder.name, "lesion_id": row["lesion_id"],
                        "lesion_probability": round(row["lesion_probability"], 3), "cut": stage["cut"],
                        "longest_3d_mm": round(row["longest_diameter_mm"], 1),
                        "axial_longest_mm": round(row["axial_longest_diameter_mm"], 1),
                        "axial_perpendicular_mm": round(row["axial_perpendicular_diameter_mm"], 1),
                        "axial_slices": row["axial_slices"],
                        "rano_measurable": rano_measurable(row["axial_longest_diameter_mm"],
                                                           row["axial_perpendicular_diameter_mm"],
                                                           row["axial_slices"]),
                        "on_a_true_lesion": bool(np.any(true[labels == row["lesion_id"]] > 0))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a longitudinal_e2e.py cache (phantoms/, seg/)")
    ap.add_argument("--seed", type=int, required=True, help="its synth seed (recorded only)")
    ap.add_argument("--followups", type=int, default=2)
    ap.add_argument("--registrations", default=None, help="folder of the cache's saved registrations")
    ap.add_argument("--cases", nargs="*", default=[], help="patients to compare from their true label maps")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cache = Path(args.cache)
    kept = kept_below_cut(cache)
    doc = {"command": f"python benchmarks/longitudinal_e2e_errors.py --cache CACHE --seed {args.seed} "
                      f"--registrations CACHE/registrations --cases {' '.join(args.cases)}",
           "kept_below_cut": kept,
           "kept_below_cut_summary": {"lesions": len(kept),
                                      "on_a_true_lesion": sum(r["on_a_true_lesion"] for r in kept),
                                      "rano_measurable": sum(r["rano_measurable"] for r in kept)},
           "truth_through_compare": []}
    for cid in args.cases:
        doc["truth_through_compare"].append(truth_through_compare(cache, cid, args.followups, args.registrations))
        print(json.dumps(doc["truth_through_compare"][-1]["true_labels_through_compare"]), cid, flush=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["kept_below_cut_summary"]))


if __name__ == "__main__":
    main()
