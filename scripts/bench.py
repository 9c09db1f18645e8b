"""Latency and peak memory of GaussianSR (EDSR-baseline, random weights, batch 1) per LR->HR case at each inference
precision (``gaussiansr_plugin.precision``: fp32, tf32 on CUDA, bf16; set as ``gaussiansr upscale --precision`` sets
it), plus the training step (B16, 48x48 LR, 2304 queries, x4). CUDA: CUDA events after warm-up, median of --reps
runs, ``torch.cuda.max_memory_allocated``. CPU: perf_counter median, smaller cases (a sanity figure only).
The plain rows are the path of ``net.upsample``, which on a GPU replays a repeated shape from a CUDA graph by itself
(``archs/upsample_graphs.py``; the warm-up covers its recording); the ``eager`` rows switch that off (only where it
would replay: outputs up to ``MAX_GRAPH_PIXELS``). The default path is the plain row of the default precision.
``--cuda-graph`` adds the same cases replayed from CUDA graphs (``GraphedUpsample``) up to 1024x1024 outputs, and the
training step replayed from one (``graphed_train_step``, as ``train.cuda_graph`` records it);
``--set key=value`` benches another design (e.g. the training ymls': ``--set gabor_bands=16 --set kernel_refine=true
--set head_input=all``); every case also gets its tensor-core limit: the FLOPs of the convolutions before the queries
(per LR pixel) and of the decoder (per query), counted by ``torch.utils.flop_counter``, at ``--peak-tflops``.
``--compile`` adds each precision with the per-chunk query (splat, bicubic stream, MLP) compiled by
``torch.compile`` (Inductor; the splat op is an opaque ``torch.library`` operator), the alternative to a hand-fused
query kernel.

    python scripts/bench.py --cuda-graph --json bench.json > bench.md
    python scripts/bench.py --device cpu --reps 3
"""
import argparse
import copy
import json
import os
import sys
from datetime import datetime, timezone

import torch
from torch.utils.flop_counter import FlopCounterMode

import gaussiansr_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import make_cell, make_coord
from gaussiansr_plugin.archs.upsample_graphs import MAX_GRAPH_PIXELS, UpsampleGraphs
from gaussiansr_plugin.cli.arguments import add_chunk_size_argument
from gaussiansr_plugin.errors import first_line
from gaussiansr_plugin.inference.cuda_graph import GraphedUpsample
from gaussiansr_plugin.inference.profiling import device_name, time_call
from gaussiansr_plugin.models.step_graph import WARMUP_STEPS, StepGraph
from gaussiansr_plugin.precision import inference_precision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from race import add_set_argument, parse_overrides  # noqa: E402  (the race's --set parser)

GPU_CASES = [(64, 2), (64, 6), (128, 4), (256, 4), (64, 12), (512, 4), (1024, 4), (2048, 4)]
CPU_CASES = [(32, 2), (32, 4), (64, 4)]
GRAPH_MAX_HR = 1024  # beyond this the GPU, not the launches, sets the pace
PEAK_TFLOPS = 790.0  # dense bf16 tensor-core matmul throughput reachable on an H200 (of 989 nominal)


@torch.no_grad()
def matmul_flops(net) -> dict:
    """FLOPs a query path cannot avoid: per LR pixel, the convolutions before the queries (encoder, selection head,
    Gabor amplitudes); per query, the decoder's linear layers. Counted on the CPU on a 32x32 input and 1024 queries."""
    net = copy.deepcopy(net).cpu().float()
    lq = torch.rand(1, 3, 32, 32)
    with FlopCounterMode(display=False) as before:
        feat = net.encode(lq)
        net.gaussians(feat)
    with FlopCounterMode(display=False) as decoder:
        net.decoder(torch.rand(1, 1024, net.decoder.layers[0].in_features))
    return {'per_lr_px': before.get_total_flops() / lq[0, 0].numel(), 'per_query': decoder.get_total_flops() / 1024}


def limit_ms(flops: dict, lr: int, hr: int, peak_tflops: float) -> float:
    """Milliseconds an lr x lr -> hr x hr case needs at ``peak_tflops`` for its ``matmul_flops``."""
    return (flops['per_lr_px'] * lr * lr + flops['per_query'] * hr * hr) / (peak_tflops * 1e9)


def timer(device: torch.device, fn, warmup: int, reps: int) -> float:
    """Median milliseconds of ``fn()``; the peak-memory counter restarts after the warm-up (steady state, as
    the peers' harness measures it)."""
    for _ in range(warmup):
        fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    return time_call(fn, device, reps, warmup=0)


def measure(device, fn, warmup, reps) -> dict:
    """``{'ms', 'peak_gib'}``, or ``{'error'}`` when the case fails (out of memory, a graph that cannot be captured):
    one failing case must not cost the rest of a device run."""
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    try:
        ms = timer(device, fn, warmup, reps)
    except torch.cuda.OutOfMemoryError as exc:
        return {'error': f'OOM: {str(exc)[:80]}'}
    except RuntimeError as exc:
        return {'error': f'{type(exc).__name__}: {first_line(exc)[:120]}'}
    row = {'ms': ms}
    if device.type == 'cuda':
        row['peak_gib'] = torch.cuda.max_memory_allocated() / 2**30
    return row


def bench_inference(net, device, cases, precision, chunk_size, warmup, reps, graph=False, compiled=False,
                    eager=False):
    """One row per case of ``net.upsample`` at ``precision`` (which replays repeated shapes from CUDA graphs by
    itself); ``graph``: ``GraphedUpsample``; ``compiled``: the query compiled (``torch.compile``; its compilation
    happens in the warm-up); ``eager``: ``auto_cuda_graphs`` off, on the cases where it would replay."""
    rows = []
    net = copy.copy(net)  # the same modules, with its own graphs (and compiled query)
    net._graphs = UpsampleGraphs()
    net.auto_cuda_graphs = not eager
    if compiled:
        net._query = torch.compile(net._query)
    graphed = GraphedUpsample(net, chunk_size, torch.bfloat16 if precision == 'bf16' else None) if graph else None
    for side, scale in cases:
        lq = torch.rand(1, 3, side, side, device=device)
        size = (round(side * scale), round(side * scale))
        if (graph and size[0] > GRAPH_MAX_HR) or (eager and size[0] * size[1] > MAX_GRAPH_PIXELS):
            continue

        def run():
            with torch.no_grad(), inference_precision(precision, device.type):
                return graphed(lq, size) if graphed else net.upsample(lq, size, chunk_size=chunk_size)

        row = {'lr': side, 'scale': scale, 'hr': size[0], 'precision': precision, 'graph': graph,
               'compiled': compiled, 'eager': eager}
        rows.append(time_case(device, run, row, warmup, reps))
        net._graphs.clear()
    return rows


def time_case(device: torch.device, run, row: dict, warmup: int, reps: int) -> dict:
    """``row`` (an inference case, ``hr`` its square output side) completed by ``measure`` of ``run`` and printed;
    outputs over 4 Mpx get one warm-up and reps // 10 runs (at least 3). Ours and the peers (bench_peers.py) alike."""
    big = row['hr'] * row['hr'] > 4e6
    row.update(measure(device, run, 1 if big else warmup, max(3, reps // 10) if big else reps))
    print(json.dumps(row), flush=True)
    return row


def variant(row: dict) -> str:
    """Column label of an inference row: its precision, compiled, eager (automatic graphs off), graph. Rows recorded
    before the precisions (a dtype and a TF32 flag) read as the precision they ran at."""
    precision = row.get('precision') or ('bf16' if row['dtype'] == 'bfloat16' else 'tf32' if row.get('tf32')
                                         else 'fp32')
    return (precision + (' compiled' if row.get('compiled') else '') + (' eager' if row.get('eager') else '')
            + (' graph' if row.get('graph') else ''))


def train_inputs(device: torch.device, scale: float = 4.0, batch: int = 16, q: int = 2304):
    """The timed training step's random batch: lq [B, 3, 48, 48], coord and cell [B, Q, 2], gt [B, Q, 3]."""
    lq = torch.rand(batch, 3, 48, 48, device=device)
    side = round(48 * scale)
    idx = torch.randint(0, side * side, (batch, q), device=device)
    coord = make_coord((side, side), device=device)[idx]
    cell = make_cell(q, (side, side), device=device).expand(batch, q, 2)
    return lq, coord, cell, torch.rand(batch, q, 3, device=device)


def _l1_step(opt: torch.optim.Optimizer, forward, device, dtype, cache: bool = True):
    """``step(batch)``: ``forward(lq, coord, cell)`` (under autocast to ``dtype`` unless float32; ``cache``: autocast's
    weight-cast cache, off for a recorded step), L1 against ``gt`` plus the network's own term where it has one
    (GaussianSR's ``take_balance_loss``, as GaussianSRModel adds it), backward and ``opt.step()``; the loss,
    detached."""
    extra_loss = getattr(forward, 'take_balance_loss', lambda: None)

    def step(batch):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32, cache_enabled=cache):
            out = forward(batch['lq'], batch['coord'], batch['cell'])
        loss = (out.float() - batch['gt']).abs().mean()
        extra = extra_loss()
        if extra is not None:
            loss = loss + extra
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _inputs(device, scale, batch, q):
    return dict(zip(('lq', 'coord', 'cell', 'gt'), train_inputs(device, scale, batch, q)))


def train_step(params, forward, device, dtype, scale=4.0, batch=16, q=2304):
    """The benched training step as a closure: ``forward(lq, coord, cell)`` on ``train_inputs`` (under autocast to
    ``dtype`` unless float32), L1, backward, an Adam step over ``params`` (fused on a GPU, as GaussianSRModel trains
    there)."""
    opt = torch.optim.Adam(params, 1e-4, fused=device.type == 'cuda')
    step, inputs = _l1_step(opt, forward, device, dtype), _inputs(device, scale, batch, q)

    def zeroed_step():
        opt.zero_grad(set_to_none=True)
        step(inputs)

    return zeroed_step


def graphed_train_step(params, forward, device, dtype, scale=4.0, batch=16, q=2304):
    """``train_step`` recorded as a CUDA graph the way ``train.cuda_graph`` records GaussianSRModel's step
    (``models/step_graph.StepGraph``: warm-up steps on a side stream, a capturable fused Adam with a device learning
    rate, the batch copied into static inputs), returned as its replay: what a step costs without the host launching
    its kernels one by one."""
    opt = torch.optim.Adam(params, 1e-4, fused=True)
    graph = StepGraph(device)
    graph.prepare(opt)
    step, inputs = _l1_step(opt, forward, device, dtype, cache=False), _inputs(device, scale, batch, q)
    with graph.side_stream():
        for _ in range(WARMUP_STEPS):
            opt.zero_grad(set_to_none=True)
            step(inputs)
    opt.zero_grad(set_to_none=True)  # the captured backward then writes the gradients into the graph's own memory
    graph.capture(inputs, step)
    return lambda: graph.replay(inputs)


def time_train_step(params, forward, device, dtype, warmup, reps, scale=4.0, batch=16, q=2304,
                    graph=False) -> dict:
    """The timed ``train_step`` (``graph``: its CUDA-graph replay), ours and the peers' (bench_peers.py) alike."""
    row = {'train_batch': batch, 'scale': scale, 'queries': q, 'dtype': str(dtype).split('.')[-1], 'graph': graph}
    try:
        step = (graphed_train_step if graph else train_step)(list(params), forward, device, dtype, scale, batch, q)
    except RuntimeError as exc:  # a step that cannot be captured is a finding, not the end of the device run
        row['error'] = f'{type(exc).__name__}: {first_line(exc)[:120]}'
    else:
        row.update(measure(device, step, warmup, reps))
    print(json.dumps(row), flush=True)
    return row


def bench_train(net, device, dtype, warmup, reps, scale=4.0, batch=16, q=2304, graph=False):
    """``time_train_step`` of a deep copy of ``net``: every row starts from the same weights, and a recorded row meets
    no autograd node of an earlier row's eager steps on the default stream (a capture after such steps on the same
    net failed on an H200, torch 2.11: "operation would make the legacy stream depend on a capturing blocking
    stream")."""
    net = copy.deepcopy(net).train()
    return time_train_step(net.parameters(), net, device, dtype, warmup, reps, scale, batch, q, graph)


def markdown(result: dict) -> str:
    variants = list(dict.fromkeys(variant(row) for row in result['inference']))
    flops = result.get('flops')  # the peers' rows (bench_peers.py) come without a limit
    title = (f"GaussianSR (EDSR-baseline{''.join(f', {k}={v}' for k, v in result.get('variant', {}).items())}) on "
             f"{result['device_name']}, torch {result['torch']}, {result['date']}")
    if flops:
        title += (f"; limit: {flops['per_lr_px'] / 1e6:.2f} MFLOP per LR pixel + {flops['per_query'] / 1e3:.0f} kFLOP "
                  f"per query at {result['peak_tflops']:g} TFLOP/s")
    extra = ['limit ms', 'fastest / limit'] if flops else []
    lines = [title, '', '| case | ' + ' | '.join([f'{v} ms | {v} GiB' for v in variants] + extra) + ' |',
             '|---|' + '---|---|' * len(variants) + '---|' * len(extra)]
    by_case = {}
    for row in result['inference']:
        by_case.setdefault((row['lr'], row['scale'], row['hr']), {})[variant(row)] = row
    for (lr, s, hr), rows in by_case.items():
        cells = []
        for v in variants:
            r = rows.get(v, {})
            cells += [f"{r['ms']:.2f}" if 'ms' in r else r.get('error', '-'),
                      f"{r['peak_gib']:.3f}" if 'peak_gib' in r else '-']
        if flops:
            limit = limit_ms(flops, lr, hr, result['peak_tflops'])
            fastest = min((r['ms'] for r in rows.values() if 'ms' in r), default=None)
            cells += [f'{limit:.3f}', f'{fastest / limit:.1f}×' if fastest else '-']
        lines.append(f'| {lr}->{hr} x{s:g} | ' + ' | '.join(cells) + ' |')
    for row in result['train']:
        label = row['dtype'] + (', graph' if row.get('graph') else '')
        ms = f"{row['ms']:.2f}" if 'ms' in row else row.get('error', '-')
        lines.append(f"| train step B{row['train_batch']} 48² {row['queries']}q x{row['scale']:g} ({label}) | "
                     f"{ms} | {row.get('peak_gib', float('nan')):.3f} |" +
                     ' |' * (2 * len(variants) - 2 + len(extra)))
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--reps', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=5)
    add_chunk_size_argument(parser, None, 'queries per chunk (default: the arch default)')
    parser.add_argument('--json', default=None)
    parser.add_argument('--cuda-graph', action='store_true', help='add CUDA-graph replays (CUDA only)')
    parser.add_argument('--compile', action='store_true', help='add each precision with the query torch.compile-d')
    parser.add_argument('--max-hr', type=int, default=None, help='skip cases with larger outputs')
    parser.add_argument('--no-train', action='store_true', help='skip the training step')
    add_set_argument(parser, 'a GaussianSR option of the benched design (repeatable)')
    parser.add_argument('--peak-tflops', type=float, default=PEAK_TFLOPS,
                        help=f'tensor-core throughput of the limit column (default {PEAK_TFLOPS:g})')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    overrides = parse_overrides(args.overrides)
    net = ARCH_REGISTRY.get('GaussianSR')(**overrides).to(device).eval()
    cases = [(side, scale) for side, scale in (GPU_CASES if device.type == 'cuda' else CPU_CASES)
             if not args.max_hr or round(side * scale) <= args.max_hr]
    cuda = device.type == 'cuda'
    precisions = ['fp32', 'tf32', 'bf16'] if cuda else ['fp32', 'bf16']  # TF32 is fp32 off CUDA
    variants = [(p, False, False, False) for p in precisions]
    variants += [(p, False, False, True) for p in precisions] if cuda else []
    variants += [(p, True, False, False) for p in precisions] if args.cuda_graph and cuda else []
    variants += [(p, False, True, False) for p in precisions] if args.compile else []
    result = {
        'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'device_name': device_name(device),
        'torch': torch.__version__, 'params': sum(p.numel() for p in net.parameters()), 'variant': overrides,
        'flops': matmul_flops(net), 'peak_tflops': args.peak_tflops,
        'inference': [
            r for precision, graph, compiled, eager in variants
            for r in bench_inference(net, device, cases, precision, args.chunk_size, args.warmup, args.reps, graph,
                                     compiled, eager)
        ],
        'train': [] if args.no_train else [
            bench_train(net, device, dt, args.warmup, max(5, args.reps // 2), graph=graph)
            for graph in ([False, True] if args.cuda_graph and cuda else [False])
            for dt in (torch.float32, torch.bfloat16)],
    }
    print(markdown(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
