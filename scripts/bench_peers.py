"""Latency and peak memory of a peer (the official GaussianSR or LIIF, from its own source folder) measured the way
scripts/bench.py measures ours: the same LR->HR cases at batch 1 (random weights, ``--precision`` tf32 or fp32 as
ours sets it), the
same training step (B16, 48x48 LR, 2304 queries, x4, L1, Adam), CUDA events after warm-up, median of ``--reps`` runs,
``torch.cuda.max_memory_allocated``. The peer renders as its test code does (race.py's wrappers: chunks of 30000
queries). One peer per process, since both packages are named ``models``.

    python scripts/bench_peers.py --peer gaussiansr --peer-root .peers --json peers_gaussiansr.json
    python scripts/bench_peers.py --peer liif --peer-root .peers --json peers_liif.json
"""
import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from typing import Dict, List

import torch

from gaussiansr_plugin.inference.profiling import device_name
from gaussiansr_plugin.precision import inference_precision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the timer, cases and training batch of our own bench)
import race  # noqa: E402  (the peers' wrappers)


def bench_peer_inference(racer: race.Racer, device: torch.device, cases, warmup: int, reps: int,
                         precision: str) -> List[Dict[str, object]]:
    """One row per case, as ``bench.bench_inference`` writes ours, at ``precision`` fp32 or tf32 (set as for ours;
    the peers' code is not written for bf16 autocast)."""
    rows = []
    racer.net.eval()
    for side, scale in cases:
        lq = torch.rand(1, 3, side, side, device=device)
        hr = round(side * scale)

        def run():
            with torch.no_grad(), inference_precision(precision, device.type):
                return racer.upsample(lq, hr, hr)

        row = {'lr': side, 'scale': scale, 'hr': hr, 'precision': precision, 'graph': False}
        rows.append(bench.time_case(device, run, row, warmup, reps))
    return rows


def bench_peer_train(racer: race.Racer, device: torch.device, warmup: int, reps: int, scale: float = 4.0,
                     batch: int = 16, q: int = 2304) -> Dict[str, object]:
    """``bench.time_train_step`` (B16, 48², 2304 queries, L1, Adam, fp32) through the peer's forward."""
    racer.net.train()
    return bench.time_train_step(racer.net.parameters(), lambda lq, coord, cell: racer.forward(lq, coord, cell, scale),
                                 device, torch.float32, warmup, reps, scale, batch, q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--peer', required=True, choices=sorted(race.PEER_DIRS))
    parser.add_argument('--peer-root', default='.peers', help='folder holding GaussianSR/ and liif/')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--reps', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--precision', choices=('fp32', 'tf32'), default='tf32',
                        help='inference precision, as for ours (default: tf32, our default)')
    parser.add_argument('--max-hr', type=int, default=None, help='skip cases with larger outputs')
    parser.add_argument('--no-train', action='store_true', help='skip the training step')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    racer = race.build_peer(args.peer, args.peer_root, device)
    cases = [c for c in (bench.GPU_CASES if device.type == 'cuda' else bench.CPU_CASES)
             if args.max_hr is None or round(c[0] * c[1]) <= args.max_hr]
    result = {'peer': args.peer, 'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
              'torch': torch.__version__, 'python': platform.python_version(),
              'device_name': device_name(device),
              'params': sum(p.numel() for p in racer.net.parameters()),
              'inference': bench_peer_inference(racer, device, cases, args.warmup, args.reps, args.precision),
              'train': [] if args.no_train else [bench_peer_train(racer, device, args.warmup, args.reps)]}
    print(bench.markdown(result).replace('GaussianSR (EDSR-baseline)', f'{args.peer} (EDSR-baseline)', 1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
