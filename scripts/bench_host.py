"""The host time of a ``net.upsample`` call that replays a recorded CUDA graph: what Python does around the replay
(the argument checks, the tiling and chunk decisions, the graph's key, the recording policy), with the graph replaced
by a stand-in that copies the input and returns a ready output, so the figure is the host's alone and any machine
can measure it. At small outputs a GPU waits for this before each replay (docs/benchmarks.md). A replay asks the
driver for no free memory (``fit_chunk_size`` runs for eager calls and the recording only).

Also the operators one render dispatches (views excluded): each is a kernel launch on a GPU, what a small upsample's
eager time and graph replay are made of. On the CPU the splat is its PyTorch reference, counted apart (on a GPU it
is one extension call of a few kernels). And the operators of one eager training step (forward, L1, backward, Adam;
the step of ``scripts/bench.py``, at batch 2 and 256 queries, which changes no operator count), what an eager step's
time on a GPU is made of. On the CPU the bicubic stream takes the ``grid_sample`` form (a GPU trains the gathered
form, ``archs/bicubic_sampling.py``), and the splat reference's backward, run by the autograd engine with no Python
frame of the reference, counts with the rest.

    python scripts/bench_host.py [--lr 64 --scale 2] [--set gabor_bands=16 ...] [--json host.json]
"""
import argparse
import collections
import json
import os
import platform
import statistics
import sys
import timeit
import traceback
from datetime import datetime, timezone

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gaussiansr_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs.upsample_graphs import STREAK, UpsampleGraphs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import train_step  # noqa: E402  (the benched training step)
from race import add_set_argument, parse_overrides  # noqa: E402  (the race's --set parser)


class ReadyReplay:
    """Stands in for a recorded graph: the input copied into a static tensor, a fresh copy of a ready output."""

    def __init__(self, render, lq: torch.Tensor):
        self.static_in, self.static_out = lq.clone(), render(lq)

    def replay(self, lq: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(lq)
        return self.static_out.clone()


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched, views excluded, and those called from the splat's PyTorch reference."""

    VIEWS = {'view', '_unsafe_view', 'reshape', 'expand', 'permute', 'unsqueeze', 'squeeze', 'slice', 'select', 't',
             'transpose', 'detach', 'alias', 'as_strided', 'split', 'split_with_sizes', 'unbind', 'chunk', 'narrow',
             'lift_fresh', 'empty', 'new_empty', 'unflatten', 'flatten'}

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in self.VIEWS:
            in_splat = any(frame.filename.endswith(os.path.join('splat', 'reference.py'))
                           for frame in traceback.extract_stack())
            self.counts['splat_reference' if in_splat else 'other'] += 1
        return func(*args, **(kwargs or {}))


def median_us(call, number: int, repeat: int) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--lr', type=int, default=64, help='LR side')
    parser.add_argument('--scale', type=float, default=2.0)
    parser.add_argument('--number', type=int, default=500, help='calls per timing')
    parser.add_argument('--repeat', type=int, default=11, help='timings; the median is reported')
    parser.add_argument('--json', default=None)
    add_set_argument(parser, 'an option of ours, e.g. gabor_bands=16 (repeatable)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net = ARCH_REGISTRY.get('GaussianSR')(**parse_overrides(args.overrides)).eval()
    net._graphs = UpsampleGraphs(record=ReadyReplay)
    net._graphable = lambda lq, size: True  # as on a GPU in inference
    lq = torch.rand(1, 3, args.lr, args.lr)
    size = (round(args.lr * args.scale),) * 2
    with torch.no_grad():
        for _ in range(STREAK + 1):
            net.upsample(lq, size)
        stand_in = next(iter(net._graphs._replays.values()))
        result = {
            'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), 'cpu': platform.processor() or
            platform.machine(), 'python': platform.python_version(), 'torch': torch.__version__,
            'lr': args.lr, 'hr': size[0], 'variant': parse_overrides(args.overrides),
            'upsample_us': median_us(lambda: net.upsample(lq, size), args.number, args.repeat),
            'stand_in_replay_us': median_us(lambda: stand_in.replay(lq), args.number, args.repeat),
            'graph_key_us': median_us(lambda: net._graph_key(lq, size, net.chunk_size), args.number, args.repeat),
        }
        count = OperatorCount()
        with count:
            net.render_whole(lq, size, net.chunk_size)
    step = train_step(list(net.parameters()), net.train(), torch.device('cpu'), torch.float32, batch=2, q=256)
    step()  # the first step creates Adam's state
    train_count = OperatorCount()
    with train_count:
        step()
    result['host_us'] = result['upsample_us'] - result['stand_in_replay_us']
    result['operators'] = {'outside_the_splat': count.counts['other'],
                           'splat_reference': count.counts['splat_reference']}
    result['train_step_operators'] = {'outside_the_splat': train_count.counts['other'],
                                      'splat_reference': train_count.counts['splat_reference']}
    print(f"{args.lr}->{size[0]}: upsample's host work {result['host_us']:.1f} µs per call (of which the graph key "
          f"{result['graph_key_us']:.1f}); the stand-in replay {result['stand_in_replay_us']:.1f} µs; operators per "
          f"render: {result['operators']['outside_the_splat']} outside the splat (+ "
          f"{result['operators']['splat_reference']} in its CPU reference); per eager training step: "
          f"{result['train_step_operators']['outside_the_splat']} outside the splat (+ "
          f"{result['train_step_operators']['splat_reference']})")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
