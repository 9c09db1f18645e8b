#!/usr/bin/env bash
# The race and ablation rows of docs/quality.md, run side by side on one GPU (each model is small), then tabulated.
# Usage (from the repo root, the harness in .peers/, the photos in datasets/demo_wallpapers):
#   bash scripts/ablations.sh OUT_DIR [ITERS [ROW...]]        # default: every row
# Rows: the variants below, plus `official` and `liif` (exported into .peers/<owner>+<name>/).
# `default` is also scored with soft kernel selection at evaluation and saves its weights; `default`, `official` and
# `liif` save the visual crops into OUT_DIR/crops. TIMING_STEPS=N first times N training iterations of each ours row
# alone (sequentially, before the races share the GPU); TIMING_ONLY=1 stops after that.
# Budget: each ours row is ~70 s of exclusive H200 time at 6000 iterations, the official GaussianSR ~250 s, LIIF
# ~120 s; rows sharing the GPU split it (five rows took 570 s). On the lent device, tar OUT_DIR into one file: a
# call returns at most 8 files.
set -euo pipefail
OUT="${1:?output folder}"; ITERS="${2:-6000}"; shift $(( $# >= 2 ? 2 : $# ))
mkdir -p "$OUT"
DATA=(--iters "$ITERS" --train-dir datasets/demo_wallpapers/train --eval-dir datasets/demo_wallpapers/val)
declare -A VARIANTS=(
  [default]="--eval-set eval_selection=soft --crops $OUT/crops --save-weights $OUT/default.pth"
  [ng0]="--set num_gaussian_channels=0"
  [ng16]="--set num_gaussian_channels=16"
  [ng64]="--set num_gaussian_channels=64"
  [bank400]="--set bank_size=400"
  [bank900]="--set bank_size=900"
  [peak]="--set gaussian_norm=peak"
  [softtrain]="--set gumbel_hard=false"
  [r2]="--set radius=2"
  [r4]="--set radius=4"
  [nores]="--set residual=none"
  [banklr10]="--bank-lr-mult 10"
  [banklr100]="--bank-lr-mult 100"
  [official]="--peer gaussiansr --crops $OUT/crops"
  [liif]="--peer liif --crops $OUT/crops"
)
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=("${!VARIANTS[@]}")
for row in "${ROWS[@]}"; do
  [ -n "${VARIANTS[$row]+x}" ] || { echo "error: unknown row $row (rows: ${!VARIANTS[*]})" >&2; exit 2; }
done
NOT_TIMED='--eval-set [^ ]*\|--crops [^ ]*\|--save-weights [^ ]*\|--bank-lr-mult [^ ]*'  # flags a timing run ignores
if [ -n "${TIMING_STEPS:-}" ]; then
  for row in "${ROWS[@]}"; do
    case "$row" in official|liif) continue ;; esac
    # shellcheck disable=SC2086
    python scripts/race.py --timing "$TIMING_STEPS" $(sed "s/$NOT_TIMED//g" <<< "${VARIANTS[$row]}") \
      > "$OUT/timing_$row.json"
  done
  [ -z "${TIMING_ONLY:-}" ] || exit 0
fi
for row in "${ROWS[@]}"; do
  # shellcheck disable=SC2086
  python scripts/race.py ${VARIANTS[$row]} -- "${DATA[@]}" --out "$OUT/race_$row.json" > "$OUT/race_$row.log" 2>&1 &
done
wait
python scripts/race.py --table "$OUT"/race_*.json
