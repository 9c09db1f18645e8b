#!/usr/bin/env bash
# The GPU-only checks and measurements of docs/benchmarks.md in one run, for a lent GPU machine:
# the CUDA tests, our latency/memory bench (eager, TF32, CUDA graphs; chunk 2^18 too) and, when the peers are
# exported into .peers/, their latency on the same machine. Everything lands in one archive OUT_DIR/gpu_checks.tgz
# (a lent machine returns few files).
#   bash scripts/gpu_checks.sh OUT_DIR
set -uo pipefail
OUT="${1:?output folder}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python -c 'import torch; print(torch.__version__)'
} > "$WORK/machine.txt" 2>&1
python -m pytest -q -p no:cacheprovider tests/test_inference tests/test_ops tests/test_archs -k "not large" \
  > "$WORK/pytest_cuda.log" 2>&1
tail -1 "$WORK/pytest_cuda.log"
python scripts/bench.py --cuda-graph --tf32 --json "$WORK/bench.json" > "$WORK/bench.md" 2>&1
python scripts/bench.py --chunk 262144 --max-hr 1024 --no-train --cuda-graph --json "$WORK/bench_chunk262144.json" \
  > "$WORK/bench_chunk262144.md" 2>&1
tail -25 "$WORK/bench.md"
if [ -f .peers/peer_latency.py ]; then
  PEERS_DIR=.peers timeout 300 python .peers/peer_latency.py --peers gaussiansr,liif --out "$WORK/peers.json" \
    > "$WORK/peers.log" 2>&1
  tail -15 "$WORK/peers.log"
fi
date -u >> "$WORK/machine.txt"
tar czf "$OUT/gpu_checks.tgz" -C "$WORK" .
