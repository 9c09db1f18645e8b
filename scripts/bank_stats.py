"""How a trained GaussianSR uses and moves its Gaussian bank: the kernels' usage over held-out photos and how far
sigma, rho and opacity moved from their initial grid (and, with ``kernel_refine``, from the bank's choice).

    python scripts/bank_stats.py --weights race_default.pth --set gabor_bands=16 --photos datasets/demo_wallpapers/val
    python scripts/bank_stats.py ... --json bank_default.json
    python scripts/bank_stats.py --plot docs/figures/bank_usage.png bank_default.json bank_gabor16r.json

The photos are reduced by ``--scale`` (antialiased bicubic, as the race makes its LR) and every LR pixel's argmax
kernel is counted. Weights: a ``state_dict`` (``race.py --save-weights``) or a BasicSR checkpoint
(``params_ema`` / ``params``).
"""
import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

import gaussiansr_plugin  # noqa: F401  (registers the arch)
from gaussiansr_plugin.archs.sgs import GaussianBank

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from json_results import read_result  # noqa: E402
from race import add_set_argument, load_ours, load_photos, parse_overrides  # noqa: E402  (the race's helpers)

PARAMETERS = ('sigma_y', 'sigma_x', 'rho', 'opacity')  # a bank kernel's channels, in order


def bank_stats(net, photos: List[torch.Tensor], scale: float) -> Dict[str, object]:
    """Usage histogram of the argmax kernels over the photos' LR pixels and the bank's movement from its initial
    grid, as a JSON-ready dict."""
    counts = torch.zeros(net.head.bank_size, dtype=torch.long)
    refine_moves = []
    with torch.no_grad():
        for hr in photos:
            size = (max(1, round(hr.shape[-2] / scale)), max(1, round(hr.shape[-1] / scale)))
            lr = F.interpolate(hr, size=size, mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)
            feat = net.encode(lr)
            index = net.kernel_logits(feat).argmax(dim=1)
            counts += torch.bincount(index.flatten().cpu(), minlength=counts.numel())
            if net.kernel_refine:  # distance of each pixel's refined kernel from the bank kernel it chose
                chosen = net.bank()[index].permute(0, 3, 1, 2)
                refine_moves.append((net.gaussians(feat) - chosen).abs().flatten(2).mean(dim=2).mean(dim=0))
    share = counts.double() / counts.sum()
    with torch.no_grad():
        bank = net.bank().cpu()
        initial = GaussianBank(bank.shape[0], (net.bank.sigma_low, net.bank.sigma_high))()
    moved = (bank - initial).abs()
    stats = {
        'pixels': int(counts.sum()),
        'kernels_used': int((counts > 0).sum()),
        'max_share': float(share.max()),
        'top5_share': [float(v) for v in share.sort(descending=True).values[:5]],
        'usage': [int(c) for c in counts],
        'moved_mean': {name: float(moved[:, i].mean()) for i, name in enumerate(PARAMETERS)},
        'moved_max': {name: float(moved[:, i].max()) for i, name in enumerate(PARAMETERS)},
    }
    if refine_moves:
        mean = torch.stack(refine_moves).mean(dim=0)
        stats['refinement_mean_abs'] = {name: float(mean[i]) for i, name in enumerate(PARAMETERS)}
    return stats


def plot_usage(paths: List[str], out: str) -> None:
    """Bar chart of each model's kernel shares, most used first, from ``--json`` files."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    for path in paths:
        stats = read_result(path, ('usage',), 'scripts/bank_stats.py --json')
        usage = np.sort(np.asarray(stats['usage'], dtype=float))[::-1]
        name = os.path.splitext(os.path.basename(path))[0]
        ax.step(np.arange(1, len(usage) + 1), 100 * usage / usage.sum(), where='mid',
                label=f"{name} ({stats['kernels_used']} kernels used)")
    ax.axhline(30, color='0.6', linestyle=':', label='30 % of the pixels')
    ax.set(xscale='log', xlabel='kernel rank', ylabel='share of LR pixels (%)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights')
    parser.add_argument('--plot', nargs='+', metavar=('PNG', 'JSON'), help='draw the usage of --json files and exit')
    add_set_argument(parser, 'GaussianSR constructor option the weights were trained with')
    parser.add_argument('--photos', default='datasets/demo_wallpapers/val')
    parser.add_argument('--scale', type=float, default=4.0, help='LR = photo reduced by this factor (default 4)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', help='also write the statistics here')
    args = parser.parse_args()
    if args.plot:
        if len(args.plot) < 2:
            raise SystemExit('error: --plot takes the PNG, then one or more JSON files of --json')
        plot_usage(args.plot[1:], args.plot[0])
        return
    if not args.weights:
        raise SystemExit('error: --weights is required (or --plot)')
    overrides = parse_overrides(args.overrides)
    device = torch.device(args.device)
    net = load_ours(args.weights, overrides, device).net
    if not net.has_gaussians:
        raise SystemExit('error: this variant has no Gaussian bank')
    photos = [im[None].float() / 255 for im in load_photos(args.photos, device, min_side=1)]
    stats = bank_stats(net, photos, args.scale)
    print(json.dumps({k: v for k, v in stats.items() if k != 'usage'}, indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(stats, weights=os.path.basename(args.weights), variant=overrides), f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
