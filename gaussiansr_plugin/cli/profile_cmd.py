"""``gaussiansr profile``: parameters, FLOPs, latency and peak memory per scale, as markdown tables on stdout."""
import argparse
import sys
from typing import Dict, List, Optional, Tuple

import torch

from ..archs.gaussiansr_arch import GaussianSR
from ..errors import UserError
from ..inference.checkpoint import build_network, load_model, read_network_options
from ..inference.profiling import ScaleCost, parameter_counts, profile_scale
from ..inference.upscaler import resolve_device
from .arguments import add_model_arguments, add_scales_argument, one_line_errors, positive_int

ENCODERS = ('edsr-baseline', 'edsr', 'rdn', 'swinir')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``gaussiansr profile``."""
    one_line_errors(parser)
    add_model_arguments(parser)
    parser.add_argument(
        '--encoder',
        choices=ENCODERS,
        default=None,
        help='profile the paper configuration with this encoder (random weights; the default, '
        'with edsr-baseline, when neither --model nor --config is given)')
    add_scales_argument(parser, [2.0, 3.0, 4.0], 'scales to profile')
    parser.add_argument(
        '--lr-size', type=positive_int, default=64, metavar='N', help='side of the square LR input. Default: 64')
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=3,
        metavar='N',
        help='timed runs per scale (the median is shown), after one warm-up run. Default: 3')


def _network(args: argparse.Namespace, device: torch.device) -> Tuple[GaussianSR, str]:
    """The network to profile and a description of it."""
    if args.encoder and (args.model or args.config):
        raise UserError('--encoder profiles the paper configuration; it excludes --model and --config')
    if args.model:
        model = load_model(args.model, args.config, device)
        return model.net, f'`{args.model}` (options from {model.options_source})'
    if args.config:
        return build_network(read_network_options(args.config), args.config).to(device).eval(), f'`{args.config}`'
    encoder = args.encoder or 'edsr-baseline'
    return GaussianSR(encoder={'type': encoder}).to(device).eval(), f'paper configuration, {encoder} encoder'


def _millions(n: int) -> str:
    return f'{n:,} ({n / 1e6:.3f} M)'


def _giga(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value / 1e9:.2f}'


def format_report(title: str, params: Dict[str, int], costs: List[ScaleCost], repeats: int,
                  device: torch.device) -> str:
    """The markdown report: a parameter table, a per-scale table and notes."""
    lines = [f'## {title}', '', '| part | parameters |', '|:--|--:|']
    lines += [f'| {part} | {_millions(n)} |' for part, n in params.items()]
    lines += [
        '', '| scale | output (WxH) | GFLOPs | encoder | Gaussians | decoder | latency (ms) | peak memory (MB) |',
        '|--:|--:|--:|--:|--:|--:|--:|--:|'
    ]
    notes: List[str] = []
    uncounted = sorted({op for c in costs for op in c.flops.uncounted_ops})
    for c in costs:
        flops = [_giga(c.flops.total)] + [_giga(c.flops.by_part.get(p)) for p in ('encoder', 'Gaussians', 'decoder')]
        if c.flops.error:
            notes.append(f'FLOPs at x{c.scale:g}: mmengine could not trace the model ({c.flops.error}).')
        lines.append(f'| x{c.scale:g} | {c.size[1]}x{c.size[0]} | {" | ".join(flops)} | {c.latency_ms:.1f} '
                     f'| {c.peak_mb:.1f} |')
    where = (f'{torch.cuda.get_device_name(device)} (CUDA events)'
             if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads (perf_counter)')
    memory = ('torch.cuda.max_memory_allocated above the memory in use before the call' if device.type == 'cuda' else
              'peak of the tensors the torch profiler saw allocated during the call')
    notes += [
        'FLOPs: mmengine.analysis (FlopAnalyzer); a multiply-add counts as one FLOP.' +
        (f' Not counted (element-wise and sampling ops): {", ".join(uncounted)}.' if uncounted else ''),
        f'Latency: median of {repeats} run(s) after one warm-up, {where}.',
        f'Peak memory: {memory}.',
    ]
    return '\n'.join(lines + [''] + [f'- {n}' for n in notes]) + '\n'


def run(args: argparse.Namespace) -> None:
    """Profile the model at each scale and print the markdown report on stdout."""
    device = resolve_device(args.device)
    net, description = _network(args, device)
    lq = torch.rand(1, 3, args.lr_size, args.lr_size, generator=torch.Generator().manual_seed(0)).to(device)
    costs = [profile_scale(net, lq, scale, args.repeats) for scale in args.scales]
    title = f'GaussianSR profile: {description}; LR {args.lr_size}x{args.lr_size}; {device.type}'
    sys.stdout.write(format_report(title, parameter_counts(net), costs, args.repeats, device))
