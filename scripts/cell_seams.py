"""How much an upscaled image steps at the LR cell borders (the grid at the LR pixel pitch that a decoder reading
the offset to the nearest LR centre can draw, ``offset_encoding``).

At an integer scale s, HR pixels k*s - 1 and k*s lie on the two sides of the border between LR pixels k - 1 and k.
The seam ratio of an image is the mean |luma step| between neighbouring HR pixels across those borders over the mean
step between neighbours inside cells, horizontally and vertically together: content that ignores the grid gives
about 1 (the HR photo's own ratio is the reference), a visible grid more. Images: the race's held-out crops (centre
240 px, LR = antialiased bicubic, 8 bits), so the figures sit beside its PSNR.

    python scripts/cell_seams.py --weights W.pth [--set key=value ...] --photos datasets/demo_wallpapers/val
    python scripts/cell_seams.py ... --scales 4 8 12 --json seams.json
"""
import argparse
import json
import os
import sys
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from race import (EVAL_SIDE, add_set_argument, bicubic_up, centre_crop, load_ours, load_photos,  # noqa: E402
                  parse_overrides)

_LUMA = (65.481 / 255, 128.553 / 255, 24.966 / 255)  # BasicSR's rgb2ycbcr Y weights, as the race's PSNR-Y


def seam_ratio(img: torch.Tensor, scale: int) -> float:
    """Mean |luma step| across the LR cell borders of ``img`` [1, 3, H, W] (upscaled ``scale`` times) over the
    mean step inside cells, both directions together."""
    y = sum(w * img[0, c] for c, w in enumerate(_LUMA)).double()
    across, inside = [], []
    for steps in ((y[:, 1:] - y[:, :-1]).abs(), (y[1:] - y[:-1]).abs().t()):  # along x, then along y (transposed)
        border = (torch.arange(1, steps.shape[1] + 1) % scale) == 0  # step j -> j + 1 crosses when j + 1 = k * s
        across.append(steps[:, border].flatten())
        inside.append(steps[:, ~border].flatten())
    return float(torch.cat(across).mean() / torch.cat(inside).mean())


def seams(upsamplers: Dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]], photos: List[torch.Tensor],
          scales: List[int]) -> Dict[str, Dict[str, float]]:
    """{name: {scale: mean seam ratio over the photos}} for each upsampler, plus ``HR`` (the crops themselves)."""
    result: Dict[str, Dict[str, float]] = {name: {} for name in ['HR', *upsamplers]}
    for s in scales:
        lr_side = EVAL_SIDE // s
        pairs = [centre_crop(im, lr_side * s, lr_side) for im in photos]
        result['HR'][str(s)] = sum(seam_ratio(hr, s) for _, hr in pairs) / len(pairs)
        for name, up in upsamplers.items():
            with torch.no_grad():
                ratios = [seam_ratio(up(lr, hr.shape[-2], hr.shape[-1]).clamp(0, 1), s) for lr, hr in pairs]
            result[name][str(s)] = sum(ratios) / len(ratios)
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', required=True, help="saved weights of ours (race.py --save-weights, a race "
                        "state's model, or a BasicSR checkpoint)")
    add_set_argument(parser, 'the GaussianSR options the weights were trained with (repeatable)')
    parser.add_argument('--photos', default='datasets/demo_wallpapers/val')
    parser.add_argument('--scales', type=int, nargs='+', default=[4, 8, 12])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', help='also write the ratios here')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    racer = load_ours(args.weights, parse_overrides(args.overrides), device)
    result = seams({'ours': racer.upsample, 'bicubic': bicubic_up}, load_photos(args.photos, device, EVAL_SIDE),
                   args.scales)
    print('| image | ' + ' | '.join(f'x{s}' for s in args.scales) + ' |\n|---|' + '---|' * len(args.scales))
    for name, ratios in result.items():
        print(f'| {name} | ' + ' | '.join(f'{ratios[str(s)]:.3f}' for s in args.scales) + ' |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'weights': os.path.basename(args.weights), 'variant': parse_overrides(args.overrides),
                       'seam_ratio': result}, f, indent=1)


if __name__ == '__main__':
    main()
