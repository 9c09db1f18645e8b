"""PSNR / SSIM (Y channel, BasicSR's calculators, border ceil(s)) of a GaussianSR checkpoint vs bicubic on a folder
of held-out photos at several scales; LR made from HR with Matlab bicubic (the test dataset's size rule).

    python scripts/evaluate.py --model gaussiansr_plugin/weights/gaussiansr_edsrb_demo.pth \
        --data datasets/demo_wallpapers/val --scales 2 3 4 2.4 6 --json results/eval.json [--precision bf16]
"""
import argparse
import json
import math
import os
import time
from datetime import datetime, timezone

import numpy as np
import torch

import gaussiansr_plugin  # noqa: F401  (BasicSR compat + registration)
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from gaussiansr_plugin.cli.arguments import add_chunk_size_argument
from gaussiansr_plugin.data.resize import imresize_to
from gaussiansr_plugin.inference.checkpoint import load_model
from gaussiansr_plugin.inference.profiling import device_name
from gaussiansr_plugin.precision import DEFAULT_PRECISION, PRECISIONS, inference_precision


def bicubic(lq: torch.Tensor, size) -> torch.Tensor:
    """Matlab bicubic upsampling of an LR tensor [1, 3, h, w] to ``size`` -> [1, 3, H, W]."""
    img = lq[0].permute(1, 2, 0).numpy().astype(np.float64)
    return torch.from_numpy(imresize_to(img, size)).permute(2, 0, 1)[None].float()


def evaluate(net, folder: str, scale: float, device: torch.device, chunk_size: int,
             precision: str = DEFAULT_PRECISION) -> dict:
    dataset = build_dataset({'name': f'eval_x{scale:g}', 'type': 'ArbitraryScaleTestDataset', 'phase': 'test',
                             'dataroot_gt': folder, 'scale': scale, 'io_backend': {'type': 'disk'}})
    border = math.ceil(scale - 1e-9)
    rows = {'psnr': [], 'ssim': [], 'bicubic_psnr': [], 'bicubic_ssim': []}
    for i in range(len(dataset)):
        item = dataset[i]
        lq, gt = item['lq'][None], tensor2img(item['gt'])
        with torch.no_grad(), inference_precision(precision, device.type):
            sr = net.upsample(lq.to(device), tuple(item['gt'].shape[-2:]), chunk_size=chunk_size).float().cpu()
        for prefix, img in (('', tensor2img(sr)), ('bicubic_', tensor2img(bicubic(lq, gt.shape[:2])))):
            rows[prefix + 'psnr'].append(calculate_psnr(img, gt, border, test_y_channel=True))
            rows[prefix + 'ssim'].append(calculate_ssim(img, gt, border, test_y_channel=True))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=None, help='checkpoint (default: the shipped one)')
    parser.add_argument('--config', default=None, help='yml with network_g, if not beside the checkpoint')
    parser.add_argument('--data', required=True, help='folder of HR photos')
    parser.add_argument('--scales', type=float, nargs='+', default=[2, 3, 4, 2.4, 6])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    add_chunk_size_argument(parser, 262144, 'queries rendered at once. Default: 262144')
    parser.add_argument('--precision', default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help=f'inference precision (gaussiansr_plugin.precision). Default: {DEFAULT_PRECISION}')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(args.model, args.config, device)
    results, start = {}, time.time()
    print('| scale | PSNR-Y ours | PSNR-Y bicubic | gain | SSIM-Y ours | SSIM-Y bicubic |')
    print('|---|---|---|---|---|---|')
    for s in args.scales:
        r = results[f'{s:g}'] = evaluate(model.net, args.data, s, device, args.chunk_size, args.precision)
        print(f"| x{s:g} | {r['psnr']:.2f} | {r['bicubic_psnr']:.2f} | {r['psnr'] - r['bicubic_psnr']:+.2f} | "
              f"{r['ssim']:.4f} | {r['bicubic_ssim']:.4f} |", flush=True)
    print(f'({time.time() - start:.0f} s, {args.device}, {args.precision}, model {model.path})')
    if args.json:
        with open(args.json, 'w') as f:
            # the model's path relative to the working directory when under it: no machine path in a published log
            shown = os.path.relpath(model.path) if os.path.abspath(model.path).startswith(os.getcwd()) else model.path
            json.dump({'model': shown, 'data': args.data, 'precision': args.precision, 'machine': device_name(device),
                       'torch': torch.__version__, 'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                       'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
