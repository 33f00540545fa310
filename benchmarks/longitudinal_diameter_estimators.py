"""Stable lesions measured by other per-slice diameter estimators (issue 26's stable ratio).

Over a cache of ``benchmarks/longitudinal_e2e.py`` (phantoms, segmentations, registrations),
every stable pair that benchmark scores against the analytic truth (lesion tracked from the
baseline as one piece, baseline >= 5 mm, analytic ratio within +-10 %) is measured again on both
scans from the saved probability map, inside the tracked lesion's own voxels (dilated by one
in-plane voxel), on each axial slice's marching-squares contour at the run's outline level
(``skimage.measure.find_contours``; mm from the scan's spacing):

- ``outline``: the longest distance between contour points, as ``lesion_table`` measures it
  (a check: it reproduces the tracked lesions' ``longest_mm``);
- ``fourier4`` / ``fourier6``: the same on the contour low-passed to its first 4 / 6 Fourier
  harmonics (arc-length resampled to 128 points), a smoother outline (it also rounds an
  elongated lesion's tips: 14 -> 13.5 mm for a 14 x 6 mm ellipse at 4 harmonics);
- ``equivalent``: 2 sqrt(area / pi) of the slice with the largest contour area (not RANO-BM's
  longest diameter: how much of the spread is the longest diameter's own).

Per estimator: follow-up / baseline ratio divided by the analytic ratio and the baseline's
measured / analytic diameter (n, median, mean, population SD, as longitudinal_e2e.py).
Synthetic phantoms only.

    python benchmarks/longitudinal_diameter_estimators.py CACHE --registrations CACHE/scores/registrations \\
        --json benchmarks/results/longitudinal_diameter_estimators_seed7900.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage import measure

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longitudinal_e2e as e2e  # noqa: E402

ESTIMATORS = ("outline", "fourier4", "fourier6", "equivalent")
RESAMPLED_POINTS = 128


def farthest_mm(points: np.ndarray) -> float:
    """Largest pairwise distance of (N, 2) points (mm)."""
    return float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1).max()))


def fourier_smoothed(contour: np.ndarray, harmonics: int) -> np.ndarray:
    """A closed (N, 2) contour resampled to equal arc length and low-passed to its first
    ``harmonics`` Fourier harmonics."""
    z = contour[:, 0] + 1j * contour[:, 1]
    z = z[:-1] if np.isclose(z[0], z[-1]) else z
    s = np.r_[0.0, np.cumsum(np.abs(np.diff(np.r_[z, z[0]])))]
    t = np.linspace(0.0, s[-1], RESAMPLED_POINTS, endpoint=False)
    closed = np.r_[z, z[0]]
    spectrum = np.fft.fft(np.interp(t, s, closed.real) + 1j * np.interp(t, s, closed.imag))
    spectrum[harmonics + 1: len(spectrum) - harmonics] = 0
    smooth = np.fft.ifft(spectrum)
    return np.c_[smooth.real, smooth.imag]


def slice_estimates(probability: np.ndarray, lesion: np.ndarray, level: float, spacing_yx) -> dict:
    """Every estimator of one lesion over its axial slices ((Z, Y, X) arrays; mm)."""
    out = dict.fromkeys(ESTIMATORS, 0.0)
    largest = 0.0
    for z in np.unique(np.nonzero(lesion)[0]):
        region = ndimage.binary_dilation(lesion[z])
        p = np.pad(np.where(region, probability[z], 0.0), 2)
        for contour in measure.find_contours(p, level):
            if len(contour) < 4:
                continue
            mm = contour * np.asarray(spacing_yx)
            out["outline"] = max(out["outline"], farthest_mm(mm))
            for h in (4, 6):
                out[f"fourier{h}"] = max(out[f"fourier{h}"], farthest_mm(fourier_smoothed(mm, h)))
            y, x = mm[:, 0], mm[:, 1]
            area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            if area > largest:
                largest, out["equivalent"] = area, 2.0 * np.sqrt(area / np.pi)
    return out


def scan_arrays(folder: Path) -> tuple:
    """(labels, probability, outline level, (dy, dx) mm) of a segment result folder."""
    level = json.loads((folder / "run.json").read_text())["settings"]["outline_threshold_used"]
    labels = sitk.ReadImage(str(folder / "lesion_labels.nii.gz"))
    probability = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "probability.nii.gz"))).astype(np.float64)
    return sitk.GetArrayFromImage(labels), probability, float(level), labels.GetSpacing()[1::-1]


def patient_rows(args, cid: str) -> list[dict]:
    from BrainMetSegLib.longitudinal.series import CompareRequest, run_comparison

    cache = Path(args.cache)
    folders = [cache / "seg" / f"{cid}_t{k}" for k in range(args.followups + 1)]
    truth = e2e.truth_of(cache / "phantoms", cid, args.followups)
    outcome = run_comparison(CompareRequest(tuple(map(str, folders)), str(Path(args.work) / cid), prior=False),
                             registrations=e2e._saved_registrations(args, cid))
    scans = [scan_arrays(f) for f in folders]

    def estimates(k: int, ids) -> dict:
        labels, probability, level, spacing = scans[k]
        return slice_estimates(probability, np.isin(labels, list(ids)), level, spacing)

    rows = []
    for tr, k, true_ratio, true_id in e2e.stable_pairs(outcome, truth, against="analytic"):
        base, follow = estimates(0, tr.at[0].lesion_ids), estimates(k, tr.at[k].lesion_ids)
        rows.append({"case": cid, "lesion": true_id, "followup": k, "true_ratio": round(true_ratio, 4),
                     "analytic_baseline_mm": round(truth["analytic"][0][true_id].longest_mm, 3),
                     "tracked_mm": [round(tr.at[0].longest_mm, 3), round(tr.at[k].longest_mm, 3)],
                     **{n: [round(base[n], 3), round(follow[n], 3)] for n in ESTIMATORS}})
    return rows


def summarise(rows: list[dict]) -> dict:
    return {n: {"stable_ratio_vs_analytic": e2e._ratio_summary([r[n][1] / r[n][0] / r["true_ratio"] for r in rows]),
                "baseline_over_analytic": e2e._ratio_summary([r[n][0] / r["analytic_baseline_mm"] for r in rows])}
            for n in ESTIMATORS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", help="a longitudinal_e2e.py --cache folder (phantoms/, seg/)")
    ap.add_argument("--registrations", required=True, help="its follow-ups' registrations (scores/registrations)")
    ap.add_argument("--followups", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for the comparisons (default CACHE/estimators)")
    ap.add_argument("--json", default=None, help="write the pairs and the summary here")
    args = ap.parse_args()
    args.scores, args.work = None, args.work or str(Path(args.cache) / "estimators")
    rows = [r for cid in e2e.case_ids(Path(args.cache) / "phantoms") for r in patient_rows(args, cid)]
    mismatch = [r for r in rows if not np.allclose(r["outline"], r["tracked_mm"], atol=0.02)]
    summary = {"pairs": len(rows), "outline_differs_from_tracked": len(mismatch), **summarise(rows)}
    print(json.dumps(summary, indent=1))
    if args.json:
        command = "python benchmarks/longitudinal_diameter_estimators.py CACHE --registrations REGISTRATIONS"
        Path(args.json).write_text(json.dumps({"command": command, "summary": summary,
                                               "pairs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
