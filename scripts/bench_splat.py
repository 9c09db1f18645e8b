"""Benchmark the splat op: CUDA kernels vs the PyTorch reference, forward and forward+backward.

Times are medians of ``--runs`` runs after ``--warmup`` runs (CUDA events on a GPU, ``perf_counter`` on CPU);
peak memory is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (inputs included).
The floor of each case is the memory traffic that any implementation must do (inputs, coords and output once
for the forward; plus upstream gradient, coords, inputs again and the gradients for the backward), divided by
``--bandwidth`` and by the device-to-device copy bandwidth measured here.

Usage:
    python scripts/bench_splat.py [--json out.json] [--device cuda|cpu] [--runs 50] [--bandwidth 4.0e12]
"""
import argparse
import datetime
import functools
import json
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch

from gaussiansr_plugin.inference.profiling import time_call
from gaussiansr_plugin.ops.splat import splat

CUDA_CASES = [
    dict(name='LR 256² → 1024², C=8, r=3', b=1, h=256, w=256, hr=1024, q=None, c=8, r=3),
    dict(name='LR 64² → 768², C=8, r=3', b=1, h=64, w=64, hr=768, q=None, c=8, r=3),
    dict(name='train B=16, 48², Q=2304, C=8, r=3', b=16, h=48, w=48, hr=None, q=2304, c=8, r=3),
    # the training ymls' design: 8 features + 16 Gabor bands (two channels each)
    dict(name='LR 256² → 1024², C=40, r=3', b=1, h=256, w=256, hr=1024, q=None, c=40, r=3),
    dict(name='train B=16, 48², Q=2304, C=40, r=3', b=16, h=48, w=48, hr=None, q=2304, c=40, r=3),
]
CPU_CASES = [
    dict(name='LR 32² → 128², C=8, r=3', b=1, h=32, w=32, hr=128, q=None, c=8, r=3),
    dict(name='train B=2, 24², Q=576, C=8, r=3', b=2, h=24, w=24, hr=None, q=576, c=8, r=3),
]


def make_case(case: Dict, device: torch.device) -> List[torch.Tensor]:
    """feat [B, C, h, w], sigma [B, 2, h, w], rho, opacity [B, 1, h, w], coords [B, Q, 2] for one case."""
    gen = torch.Generator(device=device).manual_seed(0)
    b, c, h, w = case['b'], case['c'], case['h'], case['w']
    kw = {'device': device, 'generator': gen}
    feat = torch.randn(b, c, h, w, **kw)
    sigma = 0.3 + 1.5 * torch.rand(b, 2, h, w, **kw)
    rho = 1.8 * torch.rand(b, 1, h, w, **kw) - 0.9
    opacity = torch.rand(b, 1, h, w, **kw)
    if case['hr'] is not None:  # full image: HR pixel centres in raster order
        axis = -1 + (2 * torch.arange(case['hr'], device=device) + 1) / case['hr']
        coords = torch.stack(torch.meshgrid(axis, axis, indexing='ij'), -1).reshape(1, -1, 2).expand(b, -1, -1)
    else:  # training: random query positions
        coords = 2 * torch.rand(b, case['q'], 2, **kw) - 1
    return [feat, sigma, rho, opacity, coords.contiguous()]


def median_time(fn: Callable[[], object], runs: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in seconds (the package's CUDA-event / perf_counter timer)."""
    return time_call(fn, device, runs, warmup) / 1e3


def peak_memory(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak allocated memory (MiB) during one call of ``fn``, inputs included; None on CPU."""
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def copy_bandwidth(device: torch.device, runs: int) -> float:
    """Device-to-device copy bandwidth in B/s, counting bytes read plus bytes written (1 GiB copy; 64 MiB on CPU)."""
    numel = 2**28 if device.type == 'cuda' else 2**24
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    seconds = median_time(lambda: dst.copy_(src), runs, 3, device)
    return 2 * src.numel() * src.element_size() / seconds


def launch_latency(device: torch.device, runs: int, queued: int = 1000) -> Tuple[float, float]:
    """Seconds per one-element kernel (an in-place add): launched alone, timed like the rows (events around one
    call: the least time a pass launched from Python takes here), and back to back (``queued`` launches between two
    events, divided: the GPU's own cost per kernel once the host is ahead)."""
    x = torch.zeros(1, device=device)

    def many():
        for _ in range(queued):
            x.add_(1)

    return median_time(lambda: x.add_(1), runs, 10, device), median_time(many, 5, 1, device) / queued


def floor_bytes(case: Dict, passes: str) -> int:
    """Bytes that must move (float32): forward, or forward + backward."""
    b, c, n = case['b'], case['c'], case['h'] * case['w']
    q = case['hr']**2 if case['hr'] is not None else case['q']
    params = b * n * (c + 4)  # feat + sigma, rho, opacity
    forward = params + b * q * 2 + b * q * c
    backward = b * q * c + b * q * 2 + params + params  # grad out, coords, inputs again, their grads
    return 4 * (forward if passes == 'fwd' else forward + backward)


def bench_case(case: Dict, backend: str, args: argparse.Namespace, device: torch.device) -> List[Dict]:
    """Forward (no grad) and forward+backward rows of one case and backend."""
    inputs = make_case(case, device)
    leaves = [t.requires_grad_() for t in inputs[:4]]
    grad = torch.randn(*inputs[4].shape[:2], case['c'], device=device)

    def forward():
        with torch.no_grad():
            return splat(*inputs, radius=case['r'], backend=backend)

    def forward_backward():
        out = splat(*leaves, inputs[4], radius=case['r'], backend=backend)
        return torch.autograd.grad(out, leaves, grad)

    rows = []
    for passes, fn in (('fwd', forward), ('fwd+bwd', forward_backward)):
        seconds = median_time(fn, args.runs, args.warmup, device)
        floor = floor_bytes(case, passes)
        rows.append({
            'case': case['name'],
            'backend': backend,
            'passes': passes,
            'median_ms': seconds * 1e3,
            'peak_mib': peak_memory(fn, device),
            'floor_bytes': floor,
            'floor_us': floor / args.bandwidth * 1e6,
            'x_floor': seconds / (floor / args.bandwidth),
            'x_floor_copy': seconds / (floor / args.copy_bandwidth)
        })
    return rows


def stage_rows(case: Dict, args: argparse.Namespace, device: torch.device) -> List[Dict]:
    """Median time of the CUDA forward and backward calls alone (no autograd), the backward at several parts."""
    from gaussiansr_plugin.ops.splat._backend import load_ext
    from gaussiansr_plugin.ops.splat.function import backward_parts
    ext = load_ext()[0]
    feat, sigma, rho, opacity, coords = make_case(case, device)
    b, c, h, w, r = case['b'], case['c'], case['h'], case['w'], case['r']
    out, feat_t, params = ext.forward(feat, sigma, rho, opacity, coords, r)
    grad = torch.randn_like(out)
    chosen = backward_parts(b, h * w, coords.shape[1], -(-c // ext.channels_per_thread(c)), r, device)
    stages = {'forward (prepare + splat)': lambda: ext.forward(feat, sigma, rho, opacity, coords, r)}
    for parts in sorted({1, chosen, 2 * r + 1}):
        label = f'backward P={parts}' + (' (chosen)' if parts == chosen else '')
        stages[label] = functools.partial(ext.backward, grad, coords, feat_t, params, sigma, rho, r, parts)
    return [{
        'case': case['name'],
        'stage': name,
        'median_us': median_time(fn, args.runs, args.warmup, device) * 1e6
    } for name, fn in stages.items()]


def markdown(rows: List[Dict], args: argparse.Namespace) -> str:
    """The result rows as a markdown table."""
    lines = [
        f'| case | backend | pass | median ms | peak MiB | floor µs @ {args.bandwidth:.2g} B/s | × floor | '
        f'× floor @ copy {args.copy_bandwidth:.3g} B/s |', '|---|---|---|---:|---:|---:|---:|---:|'
    ]
    for r in rows:
        peak = '–' if r['peak_mib'] is None else f"{r['peak_mib']:.0f}"
        lines.append(f"| {r['case']} | {r['backend']} | {r['passes']} | {r['median_ms']:.3f} | {peak} | "
                     f"{r['floor_us']:.1f} | {r['x_floor']:.1f} | {r['x_floor_copy']:.1f} |")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--runs', type=int, default=None, help='timed runs per row (default 50 on CUDA, 5 on CPU)')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--bandwidth', type=float, default=4.0e12, help='memory bandwidth for the floor, B/s')
    parser.add_argument('--json', default=None, help='write the results as JSON to this path')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('bench_splat: no CUDA device; use --device cpu')
    args.runs = args.runs or (50 if device.type == 'cuda' else 5)
    args.copy_bandwidth = copy_bandwidth(device, args.runs)
    args.launch_us, args.queued_launch_us = (seconds * 1e6 for seconds in launch_latency(device, 200))
    cases, backends = (CUDA_CASES, ('cuda', 'reference')) if device.type == 'cuda' else (CPU_CASES, ('reference', ))
    rows = [row for case in cases for backend in backends for row in bench_case(case, backend, args, device)]
    print(markdown(rows, args))
    print(f'\nOne-element add_ on {device.type}: {args.launch_us:.2f} µs alone (median of 200, timed like the rows), '
          f'{args.queued_launch_us:.2f} µs each back to back (1000 between two timestamps)')
    stages = [row for case in cases for row in stage_rows(case, args, device)] if device.type == 'cuda' else []
    if stages:
        print('\n| case | CUDA stage | median µs |\n|---|---|---:|')
        print('\n'.join(f"| {r['case']} | {r['stage']} | {r['median_us']:.1f} |" for r in stages))
    if args.json:
        meta = {
            'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
            'torch': torch.__version__,
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
            'command': ' '.join(sys.argv),
            'runs': args.runs,
            'warmup': args.warmup,
            'bandwidth': args.bandwidth,
            'copy_bandwidth': args.copy_bandwidth,
            'launch_us': args.launch_us,
            'queued_launch_us': args.queued_launch_us
        }
        with open(args.json, 'w') as f:
            json.dump({'meta': meta, 'rows': rows, 'stages': stages}, f, indent=2)


if __name__ == '__main__':
    main()
