#!/usr/bin/env bash
# The GPU-only checks and measurements of docs/benchmarks.md in one run, for a lent GPU machine, most important
# first, each step under its own time limit (our scripts time the design of the training ymls, DESIGN below): the
# CUDA tests; our latency/memory bench (eager fp32, TF32 and bf16, CUDA graphs; then with the query compiled by
# torch.compile); the training step's operators in fp32 and bf16
# (profile_train_step.py); when the peers' source folders are in .peers/ (GaussianSR/, liif/), their latency on the
# same machine (scripts/bench_peers.py); where the time of a query block goes (bench_query_parts.py at x12, x6,
# 256->1024 and 2048->8192); the decoder compiled with Inductor's GEMM templates, bias and GELU fused
# (bench_query_parts.py --compile-decoder at 256->1024); the bench at chunks of 2^15 and 2^18 queries.
# Everything lands in one archive OUT_DIR/gpu_checks_<steps>.tgz (a lent machine returns few files), also when a step
# fails. The steps at their time limits take about 24 minutes, more than one 10-minute job: name the steps to run,
# e.g. two jobs on one machine:
#   bash scripts/gpu_checks.sh OUT_DIR tests bench compile        # then
#   bash scripts/gpu_checks.sh OUT_DIR profile peers parts decoder_compile chunks
# Steps: tests bench compile profile peers parts decoder_compile chunks precision (default: all, in that order).
# `precision` scores the shipped model on the race's held-out crops (HELD_OUT=DIR, default
# datasets/demo_wallpapers/val) in fp32, tf32, bf16.
set -uo pipefail
OUT="${1:?output folder}"
shift
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(tests bench compile profile peers parts decoder_compile chunks precision)
HELD_OUT="${HELD_OUT:-datasets/demo_wallpapers/val}"
# the design of the training ymls and the shipped checkpoint (docs/quality.md, row balance)
DESIGN=(--set gabor_bands=16 --set kernel_refine=true --set head_input=all --set bank_balance=0.01)

step_tests() {
  timeout 330 python -m pytest -q -p no:cacheprovider tests/test_inference tests/test_ops tests/test_archs \
    tests/test_models tests/test_reliability/test_nan_steps.py tests/test_reliability/test_training_state.py \
    tests/test_cli/test_basicsr_fixes.py tests/test_scripts/test_race.py \
    tests/test_scripts/test_bench_scripts.py::test_on_a_gpu_the_recorded_bench_step_replays_after_the_cache_is_emptied \
    tests/test_scripts/test_bench_scripts.py::test_on_a_gpu_the_bench_records_its_step_after_eager_rows \
    > "$WORK/pytest_cuda.log" 2>&1
  tail -1 "$WORK/pytest_cuda.log"
}
step_bench() {
  timeout 240 python scripts/bench.py "${DESIGN[@]}" --cuda-graph --json "$WORK/bench.json" \
    > "$WORK/bench.md" 2>&1
  tail -14 "$WORK/bench.md"
}
step_compile() {
  timeout 240 python scripts/bench.py "${DESIGN[@]}" --compile --max-hr 1024 --no-train \
    --json "$WORK/bench_compile.json" > "$WORK/bench_compile.md" 2>&1
  tail -9 "$WORK/bench_compile.md"
}
step_profile() {
  timeout 60 python scripts/profile_train_step.py "${DESIGN[@]}" --rows 30 > "$WORK/train_profile.md" 2>&1
}
step_peers() {
  for pair in gaussiansr:GaussianSR liif:liif; do
    peer="${pair%%:*}"
    if [ -d ".peers/${pair##*:}" ]; then
      timeout 120 python scripts/bench_peers.py --peer "$peer" --peer-root .peers \
        --json "$WORK/peers_$peer.json" > "$WORK/peers_$peer.md" 2>&1
      tail -12 "$WORK/peers_$peer.md"
    fi
  done
}
step_parts() {
  for case in "64 12 30 10" "64 6 30 10" "256 4 30 10" "2048 4 3 1"; do
    read -r lr scale reps inner <<< "$case"
    timeout 90 python scripts/bench_query_parts.py "${DESIGN[@]}" --lr "$lr" --scale "$scale" --reps "$reps" \
      --inner "$inner" --json "$WORK/parts_${lr}_x$scale.json" > "$WORK/parts_${lr}_x$scale.md" 2>&1
    tail -15 "$WORK/parts_${lr}_x$scale.md"
  done
}
step_decoder_compile() {
  timeout 300 python scripts/bench_query_parts.py "${DESIGN[@]}" --lr 256 --scale 4 --reps 20 --inner 5 \
    --compile-decoder max-autotune-no-cudagraphs --json "$WORK/parts_decoder_compile.json" \
    > "$WORK/parts_decoder_compile.md" 2>&1
  grep -E "decoder (TF32|bf16)" "$WORK/parts_decoder_compile.md"
}
step_chunks() {
  for chunk in 32768 262144; do
    timeout 50 python scripts/bench.py "${DESIGN[@]}" --chunk-size "$chunk" --max-hr 1024 --no-train --cuda-graph \
      --json "$WORK/bench_chunk$chunk.json" > "$WORK/bench_chunk$chunk.md" 2>&1
    tail -7 "$WORK/bench_chunk$chunk.md"
  done
}
step_precision() {
  for precision in fp32 tf32 bf16; do
    timeout 60 python scripts/race.py --score gaussiansr_plugin/weights/gaussiansr_edsrb_demo.pth "${DESIGN[@]}" \
      --eval-dir "$HELD_OUT" --precision "$precision" > "$WORK/precision_$precision.json" 2>&1
    tail -c 300 "$WORK/precision_$precision.json"; echo
  done
}

for step in "${STEPS[@]}"; do
  if [ "$(type -t "step_$step")" != function ]; then
    echo "error: unknown step $step (steps: tests bench compile profile peers parts decoder_compile chunks" \
      "precision)" >&2
    exit 2
  fi
done
WORK="$(mktemp -d)"
mkdir -p "$OUT"
NAME="gpu_checks_$(IFS=_; echo "${STEPS[*]}")"
trap 'date -u >> "$WORK/machine.txt"; tar czf "$OUT/$NAME.tgz" -C "$WORK" .' EXIT
{
  date -u
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python -c 'import torch; print(torch.__version__)'
} > "$WORK/machine.txt" 2>&1
# the splat extension is built (JIT, on a fresh machine) before any step runs under its time limit
python -c 'from gaussiansr_plugin.ops.splat._backend import load_ext; print("splat extension:", load_ext()[1] or "loaded")' \
  >> "$WORK/machine.txt" 2>&1

for step in "${STEPS[@]}"; do
  echo "== $step"
  "step_$step"
done
