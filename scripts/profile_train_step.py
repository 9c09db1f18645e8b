"""Where a training step's time goes: the operators of bench.py's training step (B16, 48x48 LR, 2304 queries, x4;
random weights) by self device time (CPU time on the CPU), in fp32 and under bf16 autocast, from torch.profiler over
a few steps after warm-up. Shows which operators bf16 makes slower, and what a faster step has to remove.

    python scripts/profile_train_step.py --rows 25 > train_profile.md
    python scripts/profile_train_step.py --set gabor_bands=16 --set kernel_refine=true --set head_input=all
"""
import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import gaussiansr_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import train_step  # noqa: E402  (the step bench.py times)
from race import add_set_argument, parse_overrides  # noqa: E402  (the race's --set parser)


def profile_step(net: torch.nn.Module, device: torch.device, dtype: torch.dtype, steps: int, rows: int,
                 batch: int, queries: int) -> str:
    """The profiler's table of ``steps`` training steps after three warm-up steps, ``rows`` operators by self time."""
    step = train_step(net.parameters(), net, device, dtype, batch=batch, q=queries)
    for _ in range(3):
        step()
    cuda = device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    return prof.key_averages().table(sort_by='self_cuda_time_total' if cuda else 'self_cpu_time_total',
                                     row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--rows', type=int, default=25)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--queries', type=int, default=2304)
    add_set_argument(parser, 'a GaussianSR option of the profiled design (repeatable)')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GaussianSR')(**parse_overrides(args.overrides)).to(device).train()
    for dtype in (torch.float32, torch.bfloat16):
        print(f'\n## {str(dtype).split(".")[-1]}, {args.steps} steps of B{args.batch}, 48x48 LR, {args.queries} '
              f'queries on {torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}\n')
        print(profile_step(net, device, dtype, args.steps, args.rows, args.batch, args.queries), flush=True)


if __name__ == '__main__':
    main()
