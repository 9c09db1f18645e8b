"""The training step with each form of the decoder's bicubic stream (``archs/bicubic_sampling.py``): ``gathered``
(what training takes on a GPU: a gather of each query's 16 rows, whose backward adds whole rows) or ``grid_sample``
(grid_sample's backward, one atomic add per channel and tap). One form per process, so that run order and a failed
capture cannot leak into the other; alternate the forms over a few rounds. Rows: the recorded step (fp32, bf16),
the eager step (fp32, bf16), each on a copy of one initial net (``bench.bench_train``); the design of the training
ymls unless ``--set`` says otherwise. CUDA events after warm-up, median of ``--reps``.

    for r in 1 2; do for f in gathered grid_sample; do
        python scripts/bench_bicubic.py --form $f --json bicubic_${f}_$r.json; done; done
"""
import argparse
import json
import os
import sys
from typing import List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the benched training step)
from race import add_set_argument, parse_overrides  # noqa: E402

from basicsr.utils.registry import ARCH_REGISTRY  # noqa: E402
import gaussiansr_plugin.archs.gaussiansr_arch as gaussiansr_arch  # noqa: E402
from gaussiansr_plugin.archs.bicubic_sampling import grid_sample_bicubic  # noqa: E402

DESIGN = {'gabor_bands': 16, 'kernel_refine': True, 'head_input': 'all', 'bank_balance': 0.01}  # the training ymls'


def main(argv: Optional[List[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--form', required=True, choices=('gathered', 'grid_sample'))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--reps', type=int, default=40)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--queries', type=int, default=2304)
    parser.add_argument('--json', default=None)
    add_set_argument(parser, 'a GaussianSR option instead of the training ymls\' design (repeatable)')
    args = parser.parse_args(argv)
    # the arch calls sample_bicubic through its module's namespace: grid_sample there, whatever the input
    form = grid_sample_bicubic if args.form == 'grid_sample' else gaussiansr_arch.sample_bicubic
    default, gaussiansr_arch.sample_bicubic = gaussiansr_arch.sample_bicubic, form
    try:
        rows = _rows(args)
    finally:
        gaussiansr_arch.sample_bicubic = default
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


def _rows(args: argparse.Namespace) -> List[dict]:
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GaussianSR')(**(parse_overrides(args.overrides) or DESIGN)).to(device)
    graphs = [True, False] if device.type == 'cuda' else [False]
    rows = []
    for graph in graphs:
        for dtype in (torch.float32, torch.bfloat16):
            row = bench.bench_train(net, device, dtype, args.warmup, args.reps, batch=args.batch, q=args.queries,
                                    graph=graph)
            rows.append(dict(row, form=args.form))
    return rows


if __name__ == '__main__':
    main()
