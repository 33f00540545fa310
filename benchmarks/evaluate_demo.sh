#!/usr/bin/env bash
# Evaluate the demo model on synthetic cases, end to end, and screenshot the report.
#
#   benchmarks/evaluate_demo.sh [WORKDIR]            (defaults: 30 cases, seed 2026, model brainmetseg-demo)
#   N=30 SEED=2026 MODEL=brainmetseg-demo MATCH=overlap benchmarks/evaluate_demo.sh /tmp/bms_eval_demo
#
# Steps: `brainmetseg synth` (N cases, nnU-Net layout: imagesTr, labelsTr, brainmasksTr) ->
# `brainmetseg segment` (batch via a manifest, one folder per case) -> a "clinical" CSV of real
# properties of the synthetic cases (template anatomy, thick-slice acquisition) -> `brainmetseg
# evaluate` with subgroups and threshold selection -> headless Chromium screenshot of report.html
# into docs/evaluation/demo_report.png (full page, 1280 px wide).
# The synthetic seed must differ from the demo model's training seed(s); check its model card.
# Runtime on 2 CPU cores: synth ~30 s/case, segment ~20-60 s/case, evaluate ~1-2 min.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/bms_eval_demo}"
N="${N:-30}"
SEED="${SEED:-2026}"
MODEL="${MODEL:-brainmetseg-demo}"
MATCH="${MATCH:-overlap}"
SHOT="${SHOT:-$HERE/docs/evaluation/demo_report.png}"

mkdir -p "$WORK"
if [ ! -f "$WORK/synth/dataset.json" ]; then
  brainmetseg synth -n "$N" -o "$WORK/synth" --seed "$SEED" --progress none
fi

python - "$WORK" <<'PY'
import csv, json, sys
from pathlib import Path
work = Path(sys.argv[1])
synth = work / "synth"
cases = json.loads((synth / "dataset.json").read_text())["synthetic"]["cases"]
with open(work / "segment_manifest.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["case_id", "t1ce"])
    for c in cases:
        w.writerow([c, synth / "imagesTr" / f"{c}_0000.nii.gz"])
with open(work / "clinical.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["case_id", "anatomy", "acquisition", "stratum"])
    for c in cases:
        info = json.loads((synth / "lesionsTr" / f"{c}.json").read_text())["info"]
        thick = "acquired_spacing_mm" in info.get("acquisition", {})
        w.writerow([c, info.get("anatomy", ""), "thick-slice" if thick else "isotropic", info.get("stratum", "")])
PY

brainmetseg segment --manifest "$WORK/segment_manifest.csv" -o "$WORK/pred" --model "$MODEL" \
  --progress none --overwrite

brainmetseg evaluate --pred "$WORK/pred" --gt "$WORK/synth/labelsTr" \
  --brain-masks "$WORK/synth/brainmasksTr" --images "$WORK/synth/imagesTr" \
  --clinical "$WORK/clinical.csv" --subgroup acquisition --subgroup anatomy \
  --match "$MATCH" --select-threshold -o "$WORK/eval" --overwrite --progress none \
  --title "Demo model ($MODEL) on $N synthetic cases (seed $SEED)"

CHROME="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -n "$CHROME" ]; then
  mkdir -p "$(dirname "$SHOT")"
  PROFILE="$(mktemp -d)"
  "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$PROFILE" --screenshot="$SHOT" --window-size=1280,2400 \
    "file://$WORK/eval/report.html" >/dev/null 2>&1 || echo "screenshot failed" >&2
  rm -rf "$PROFILE"
  echo "screenshot: $SHOT"
fi
echo "report: $WORK/eval/report.html"
