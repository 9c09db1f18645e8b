#!/usr/bin/env bash
# The equal-budget race of docs/quality.md: one scripts/race.py process per row, all in the background on one GPU
# (each model is small), then the markdown tables of every row's JSON so far. The GPU time-slices between the
# processes: more than two rows side by side run slower than one after the other (docs/quality.md).
# Usage (from the repo root; the photos in datasets/demo_wallpapers, the peers' code in .peers/GaussianSR, .peers/liif):
#   bash scripts/race_all.sh OUT_DIR STATE_DIR ITERS TIME_LIMIT [ROW...]     # default: every row
# Each row trains with --tf32 --state STATE_DIR/<row> --out OUT_DIR/race_<row>.json --time-limit TIME_LIMIT and logs to
# OUT_DIR/race_<row>.log. A row that nears TIME_LIMIT seconds saves, writes its JSON so far and stops (the tables
# after it take a few seconds more: 540 fits a 600 s call); run the same command again (with the same STATE_DIR) to
# resume every row where it stopped. Rows evaluate at race.py's --eval-at
# default (6000, 11000, 25000, 50000) up to ITERS, and at ITERS. EVAL_AT=n,n,... overrides it.
# PHOTOS=DIR reads the photos from DIR/train and DIR/val instead of datasets/demo_wallpapers.
# CUDA_GRAPH=1 records the training step of our rows as a CUDA graph (race.py --cuda-graph; the peers' rows stay
# eager); their states are rows of their own, not resumable without it.
# `default` saves its weights (OUT_DIR/default.pth); `default`, `official` and `liif` save the visual crops into
# OUT_DIR/crops. Add a row: one line `[name]="race.py arguments"` below.
set -euo pipefail
OUT="${1:?output folder}"; STATE="${2:?state folder}"; ITERS="${3:?iterations}"; LIMIT="${4:?time limit (s)}"
shift 4
mkdir -p "$OUT" "$STATE"
PHOTOS="${PHOTOS:-datasets/demo_wallpapers}"  # train/ and val/ of PNGs or lossless WebPs (scripts/pack_photos.py)
COMMON=(--iters "$ITERS" --train-dir "$PHOTOS/train" --eval-dir "$PHOTOS/val" --tf32
        --time-limit "$LIMIT")
[ -z "${EVAL_AT:-}" ] || COMMON+=(--eval-at "$EVAL_AT")
GABOR16R="--set gabor_bands=16 --set kernel_refine=true --set head_input=all"
BALANCE="$GABOR16R --set bank_balance=0.01"  # the design of options/gaussiansr_x4.yml
declare -A ROW_ARGS=(
  [default]="--crops $OUT/crops --save-weights $OUT/default.pth"
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
  [refine]="--set kernel_refine=true --set head_input=all --save-weights $OUT/refine.pth"
  [gabor16]="--set gabor_bands=16"
  [gabor16r]="$GABOR16R --save-weights $OUT/gabor16r.pth --crops $OUT/crops_gabor16r"
  [gabor32r]="--set gabor_bands=32 --set kernel_refine=true --set head_input=all"
  [balance]="$BALANCE"
  [balance_s1]="--seed 1 $BALANCE"
  [balance32]="--set gabor_bands=32 --set kernel_refine=true --set head_input=all --set bank_balance=0.01"
  [periodic]="$BALANCE --set offset_encoding=periodic"
  [balance_ng16]="$BALANCE --set num_gaussian_channels=16"
  [balance_soft]="$BALANCE --set gumbel_hard=false"
  [balance_colour]="$BALANCE --set splat_colour=true"
  [balance_w320]="$BALANCE --set mlp_hidden=[320,320,320,320]"  # the official code's parameter budget
  [default_s1]="--seed 1"
  [gabor16r_s1]="--seed 1 $GABOR16R"
  [ng0_s1]="--seed 1 --set num_gaussian_channels=0"
  [official]="--peer gaussiansr --peer-root .peers --crops $OUT/crops"
  [official_s1]="--seed 1 --peer gaussiansr --peer-root .peers"
  [liif]="--peer liif --peer-root .peers --crops $OUT/crops"
)
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=("${!ROW_ARGS[@]}")
for row in "${ROWS[@]}"; do
  [ -n "${ROW_ARGS[$row]+x}" ] || { echo "error: unknown row $row (rows: ${!ROW_ARGS[*]})" >&2; exit 2; }
done
PIDS=()
for row in "${ROWS[@]}"; do
  GRAPH=()
  [ "${CUDA_GRAPH:-0}" != 1 ] || [[ "${ROW_ARGS[$row]}" == *--peer* ]] || GRAPH=(--cuda-graph)
  # shellcheck disable=SC2086  # ROW_ARGS values are word lists
  python scripts/race.py ${ROW_ARGS[$row]} "${COMMON[@]}" "${GRAPH[@]}" --state "$STATE/$row" \
    --out "$OUT/race_$row.json" >> "$OUT/race_$row.log" 2>&1 &
  PIDS+=("$!")
done
STATUS=0
for i in "${!PIDS[@]}"; do
  wait "${PIDS[$i]}" || { echo "error: row ${ROWS[$i]} failed (see $OUT/race_${ROWS[$i]}.log)" >&2; STATUS=1; }
done
JSONS=()
for row in "${ROWS[@]}"; do [ ! -f "$OUT/race_$row.json" ] || JSONS+=("$OUT/race_$row.json"); done
if [ ${#JSONS[@]} -gt 0 ]; then
  python - "${JSONS[@]}" <<'PY'
import json, sys
for path in sys.argv[1:]:
    with open(path) as f:
        r = json.load(f)
    print(f"{r['racer']}: {r['iterations_done']}/{r['iters']} iterations"
          + ('' if r['finished'] else ' (paused: run the same command again to resume)'))
PY
  python scripts/race.py --table "${JSONS[@]}"
fi
exit "$STATUS"
