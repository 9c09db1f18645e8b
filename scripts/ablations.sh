#!/usr/bin/env bash
# The ablation rows of docs/quality.md, run side by side on one GPU (each is small), then tabulated.
# Usage (from the repo root, the harness in .peers/, the photos in datasets/demo_wallpapers):
#   bash scripts/ablations.sh OUT_DIR [ITERS]
# With PEERS=1 the official GaussianSR and LIIF (exported into .peers/<owner>+<name>/) race in the same call.
set -euo pipefail
OUT="${1:?output folder}"; ITERS="${2:-6000}"
mkdir -p "$OUT"
DATA=(--iters "$ITERS" --train-dir datasets/demo_wallpapers/train --eval-dir datasets/demo_wallpapers/val)
declare -A VARIANTS=(
  [default]=""
  [ng0]="--set num_gaussian_channels=0"
  [ng16]="--set num_gaussian_channels=16"
  [ng64]="--set num_gaussian_channels=64"
  [bank400]="--set bank_size=400"
  [bank900]="--set bank_size=900"
  [density]="--set gaussian_norm=density"
  [evalsoft]="--set eval_selection=soft"
  [r2]="--set radius=2"
  [r4]="--set radius=4"
  [nores]="--set residual=none"
)
for name in "${!VARIANTS[@]}"; do
  # shellcheck disable=SC2086
  python scripts/race.py ${VARIANTS[$name]} -- "${DATA[@]}" --out "$OUT/race_$name.json" > "$OUT/race_$name.log" 2>&1 &
done
if [ "${PEERS:-0}" = 1 ]; then
  for peer in gaussiansr liif; do
    python .peers/quality_race.py --peer "$peer" "${DATA[@]}" --out "$OUT/peer_$peer.json" > "$OUT/peer_$peer.log" 2>&1 &
  done
fi
wait
python scripts/race.py --table "$OUT"/*.json
