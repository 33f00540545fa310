"""Markdown table of two scorers' figures per slice thickness, from the metrics of
docs/training/evaluate_candidate_stage.py (docs/training/candidate_stage.md, "How 2.3.0's
scorer was made").

Usage::

    python docs/training/slice_table.py --mode default --json OUT.json \
        "2.2.1:1:EVAL_OLD1" "2.3.0:1:EVAL_NEW1" "2.2.1:3:EVAL_OLD3" ...

Each argument is SCORER:SLICE_MM:FOLDER (FOLDER/candidate_stage_metrics.json). A row per
(slice, scorer): lesions found per size bin (longest diameter), false positives per case, those
mostly outside the phantom's brain, possible lesions per case and the expected calibration
error. --json also writes the rows (with Wilson 95 % intervals) for a model card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BINS = ("<3 mm", "3-10 mm", ">=10 mm", ">=5 mm", "all")


def row(scorer: str, slice_mm: float, folder: Path, mode: str) -> dict:
    metrics = json.loads((folder / "candidate_stage_metrics.json").read_text())
    m = metrics["modes"][mode]
    return {"scorer": scorer, "slice_mm": slice_mm, "cases": metrics["cases"], "mode": mode,
            **{b: m[b] for b in BINS}, "fp_per_case": m["fp_per_case"], "fp_outside_brain": m["fp_outside_brain"],
            "possible_per_case": m["possible_per_case"], "ece": metrics["ece"]}


def cell(b: dict) -> str:
    return f"{b['detected']}/{b['lesions']}, {b['sensitivity']:.2f}" if b["lesions"] else "-"


def markdown(rows: list[dict]) -> str:
    head = ["slices", "scorer", *BINS, "FP / case", "FP outside brain", "possible / case", "ECE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['slice_mm']:g} mm | {r['scorer']} | " + " | ".join(cell(r[b]) for b in BINS)
                     + f" | {r['fp_per_case']:.2f} | {r['fp_outside_brain']} | {r['possible_per_case']:.2f}"
                     f" | {r['ece']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="SCORER:SLICE_MM:FOLDER")
    p.add_argument("--mode", default="default")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = []
    for run in args.runs:
        scorer, slice_mm, folder = run.split(":", 2)
        rows.append(row(scorer, float(slice_mm), Path(folder), args.mode))
    print(markdown(rows), end="")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
