"""Where the time of a whole-image upsample goes: each part of one query block timed alone on the GPU (EDSR-baseline,
random weights, batch 1), and the decoder's matmuls against the GPU's fp32 rate. Each part runs ``--inner`` times
between two CUDA events (so launch latency is amortised), median of ``--reps``; ``per image`` scales the block's
figure to all queries of the image. Each part's peak memory is counted above what the script holds (``held_mib``
on CUDA: the image's encoder map, splat and bicubic-stream maps and one block's inputs), which shows where a large
image's memory goes.

    python scripts/bench_query_parts.py --lr 64 --scale 12 --json parts_x12.json [--set gabor_bands=16 ...]
        [--compile-decoder max-autotune-no-cudagraphs]
"""
import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

import gaussiansr_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import make_cell, make_coord
from gaussiansr_plugin.archs.bicubic_sampling import sample_bicubic
from gaussiansr_plugin.cli.arguments import add_chunk_size_argument
from gaussiansr_plugin.inference.profiling import device_name, peak_memory_mb, time_call
from gaussiansr_plugin.ops.splat import SplatSource, splat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from race import add_set_argument, parse_overrides  # noqa: E402  (the race's --set parser)


def decoder_flops(net, queries: int) -> float:
    return 2 * queries * sum(m.in_features * m.out_features for m in net.decoder.modules()
                             if isinstance(m, torch.nn.Linear))


def linears_only(net, x):
    """The decoder's matmuls (bias included) without its GELUs: the GEMM share of the decoder."""
    for m in net.decoder.modules():
        if isinstance(m, torch.nn.Linear):
            x = F.linear(x, m.weight, m.bias)
    return x


def compiled_decoder_parts(net, x, mode, tf32, bf16, num_blocks) -> dict:
    """``--compile-decoder``'s rows: the decoder compiled for its block shape, one compilation per precision."""
    if mode is None:
        return {}
    compiled = {precision: torch.compile(net.decoder, mode=mode, dynamic=False) for precision in ('tf32', 'bf16')}
    return {f'decoder TF32, torch.compile {mode}': (tf32(lambda: compiled['tf32'](x)), num_blocks),
            f'decoder bf16 autocast, torch.compile {mode}': (bf16(lambda: compiled['bf16'](x)), num_blocks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--lr', type=int, default=64)
    parser.add_argument('--scale', type=float, default=12)
    add_chunk_size_argument(parser, 131072, 'queries per block, as upsample decodes them. Default: 131072')
    parser.add_argument('--reps', type=int, default=30)
    parser.add_argument('--inner', type=int, default=10)
    parser.add_argument('--json')
    parser.add_argument('--device', default='cuda', help='cpu only for a smoke run')
    add_set_argument(parser, 'a GaussianSR option of the timed design (repeatable)')
    parser.add_argument('--compile-decoder', metavar='MODE', default=None,
                        help='add the decoder compiled by torch.compile in this mode (e.g. max-autotune-no-cudagraphs: '
                             "Inductor's GEMM templates with the bias and GELU fused), TF32 and bf16; its compilation "
                             'happens in the warm-up')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GaussianSR')(**parse_overrides(args.overrides)).to(device).eval()
    net.auto_cuda_graphs = False  # every part runs eagerly, the whole upsample too (it repeats one shape)
    net.auto_tile_side = None  # and the whole upsample is the sum of the parts timed here, untiled at 2048² too
    lq = torch.rand(1, 3, args.lr, args.lr, device=device)
    hr = round(args.lr * args.scale)
    num_blocks = -(-hr * hr // args.chunk_size)  # upsample decodes the row-major grid in blocks of --chunk-size
    coord = make_coord((hr, hr), device=device)[None, :args.chunk_size]
    q = coord.shape[1]
    cell = make_cell(1, (hr, hr), device=device).expand(1, q, 2)
    with torch.no_grad():
        feat = net.encode(lq)
        maps = net.splat_maps(lq, feat, net.gaussians(feat))
        params = SplatSource(*maps, net.radius, backend=net.splat_backend)  # net._splat_params, without a 2nd selection
        side = net._bicubic_stream(lq, feat)
        x = torch.randn(1, q, net.decoder.layers[0].in_features, device=device)
        hidden = torch.randn(1, q, net.decoder.layers[0].out_features, device=device)

    def tf32(fn):
        def run():
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                fn()
            finally:
                torch.backends.cuda.matmul.allow_tf32 = False
        return run

    def bf16(fn):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                fn()
        return run

    def fused(fn):
        def run():
            net.decoder.fuse_bf16 = True
            try:
                fn()
            finally:
                net.decoder.fuse_bf16 = False
        return run

    parts = {
        'encode (per image)': (lambda: net.encode(lq), 1),
        'selection + splat parameters (per image)': (lambda: net._splat_params(lq, feat, net.gaussians(feat)), 1),
        'splat (maps prepared once per image)': (lambda: params(coord), num_blocks),
        'splat, maps prepared per call': (lambda: splat(*maps, coord, net.radius), num_blocks),
        'bicubic stream (grid_sample)': (lambda: sample_bicubic(side, coord), num_blocks),
        'decoder fp32': (lambda: net.decoder(x), num_blocks),
        'decoder matmuls only fp32': (lambda: linears_only(net, x), num_blocks),
        'decoder GELUs only (4 x [Q, 256])': (lambda: [F.gelu(hidden) for _ in range(4)], num_blocks),
        'decoder TF32': (tf32(lambda: net.decoder(x)), num_blocks),
        'decoder matmuls only TF32': (tf32(lambda: linears_only(net, x)), num_blocks),
        'decoder TF32, bias + GELU in the GEMM epilogue':
            (tf32(lambda: net.decoder.forward_fused(x, torch.float32)), num_blocks),
        'decoder bf16 autocast': (bf16(lambda: net.decoder(x)), num_blocks),
        'decoder bf16 autocast, bias + GELU in the GEMM epilogue': (bf16(fused(lambda: net.decoder(x))), num_blocks),
        **compiled_decoder_parts(net, x, args.compile_decoder, tf32, bf16, num_blocks),
        'query block (all of the above per block)': (lambda: net._query(feat, params, side, coord, cell),
                                                     num_blocks),
        'upsample (whole image, eager)': (lambda: net.upsample(lq, (hr, hr), chunk_size=args.chunk_size), 1),
    }
    held_mib = torch.cuda.memory_allocated(device) / 2**20 if device.type == 'cuda' else None
    rows = []
    with torch.no_grad():
        for name, (fn, per_image) in parts.items():
            def inner(fn=fn):
                for _ in range(args.inner):
                    fn()
            ms = time_call(inner, device, args.reps, warmup=2) / args.inner
            row = {'part': name, 'ms_per_block': ms, 'ms_per_image': ms * per_image,
                   'peak_mib': peak_memory_mb(fn, device)}
            if name.startswith(('decoder matmuls', 'decoder fp32', 'decoder TF32')):
                row['tflops'] = decoder_flops(net, q) / (ms * 1e-3) / 1e12
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {'date': datetime.now(timezone.utc).isoformat(timespec='seconds'), 'host': platform.node(),
              'device_name': device_name(device),
              'torch': torch.__version__, 'variant': parse_overrides(args.overrides), 'lr': args.lr, 'hr': hr,
              'chunk_size': args.chunk_size, 'block_queries': q, 'blocks': num_blocks, 'held_mib': held_mib,
              'parts': rows}
    held = f", {held_mib:.0f} MiB held" if held_mib is not None else ''
    print(f"\n{result['device_name']}, LR {args.lr}² -> {hr}², blocks of {q} queries x {num_blocks}{held}\n")
    print('| part | ms per block | ms per image | TFLOP/s | peak MiB above the held maps |\n|---|---:|---:|---:|---:|')
    for r in rows:
        tflops = f"{r['tflops']:.1f}" if 'tflops' in r else ''
        print(f"| {r['part']} | {r['ms_per_block']:.3f} | {r['ms_per_image']:.3f} | {tflops} | {r['peak_mib']:.0f} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
