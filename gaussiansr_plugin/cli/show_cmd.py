"""``gaussiansr show``: figures of a model: its Gaussian bank, the kernel choice map and SR side by side."""
import argparse
import sys
from os import path as osp
from typing import List

import cv2
import numpy as np
import torch

from ..archs.gaussiansr_arch import GaussianSR
from ..data.resize import imresize_to
from ..errors import UserError
from ..inference.checkpoint import load_model
from ..inference.image_io import read_image, write_bytes_atomic
from ..inference.upscaler import RenderPlan, render, resolve_device, rgb_to_tensor, target_size
from .arguments import add_model_arguments, add_scales_argument, non_negative_int, one_line_errors

MAX_PIXELS = 50_000_000  # per compared output image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``gaussiansr show``."""
    one_line_errors(parser)
    add_model_arguments(parser)
    parser.add_argument(
        '--image',
        action='append',
        default=None,
        metavar='PATH',
        help='LR image (repeat for more; the kernel usage counts all, the maps and the comparison '
        'show the first). Default: skimage.data.chelsea()')
    parser.add_argument(
        '--out',
        default=osp.join('results', 'show'),
        metavar='DIR',
        help='folder for bank.png, choice_map.png and compare.png. Default: results/show')
    parser.add_argument(
        '--lr-size',
        type=non_negative_int,
        default=128,
        metavar='N',
        help='shrink images whose longer side exceeds N (area resampling; 0 keeps them). Default: 128')
    add_scales_argument(parser, [2.0, 3.5, 8.0], 'scales compared in compare.png')


def _load_images(paths: List[str], lr_size: int) -> List[np.ndarray]:
    """Each LR image as RGB [h, w, 3] float32 in [0, 1], shrunk to a longer side of ``lr_size`` if larger."""
    if paths:
        images = [read_image(p).rgb for p in paths]
    else:
        from skimage import data as skdata
        images = [skdata.chelsea().astype(np.float32) / 255]
    shrunk = []
    for rgb in images:
        h, w = rgb.shape[:2]
        if lr_size and max(h, w) > lr_size:
            factor = lr_size / max(h, w)
            rgb = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        shrunk.append(rgb)
    return shrunk


def _comparisons(net: GaussianSR, lr: np.ndarray, scales: List[float], device: torch.device) -> list:
    """LR (nearest), bicubic (Matlab) and GaussianSR upscalings of ``lr`` at each scale (``figures.Comparison``)."""
    from ..inference.figures import Comparison
    lq = rgb_to_tensor(lr, device)
    rows = []
    for scale in scales:
        size = target_size(lr.shape[:2], scale, None, MAX_PIXELS)
        ours = render(net, lq, size, RenderPlan(chunk_size=net.chunk_size))[0].permute(1, 2, 0).cpu().numpy()
        nearest = cv2.resize(lr, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        rows.append(Comparison(scale, nearest, np.clip(imresize_to(lr, size), 0, 1), ours))
    return rows


def run(args: argparse.Namespace) -> None:
    """Draw bank.png, choice_map.png and compare.png into ``--out``."""
    # matplotlib is imported only when figures are drawn
    from ..inference.figures import bank_figure, choice_figure, compare_figure, figure_png, kernel_choice
    device = resolve_device(args.device)
    images = _load_images(args.image or [], args.lr_size)
    net = load_model(args.model, args.config, device).net
    if not net.has_gaussians:
        raise UserError('this model splats no channels (num_gaussian_channels: 0), so it has no Gaussian bank to show')
    with torch.no_grad():
        bank = net.bank().float().cpu().numpy()
    k = bank.shape[0]
    choices = [kernel_choice(net, rgb_to_tensor(rgb, device)) for rgb in images]
    usage = sum(np.bincount(index.ravel(), minlength=k) for index, _ in choices)
    lr, (index, sigma) = images[0], choices[0]
    figures = {
        'bank.png': bank_figure(bank, usage),
        'choice_map.png': choice_figure(lr, index, sigma, k),
        'compare.png': compare_figure(lr.shape[:2], _comparisons(net, lr, args.scales, device)),
    }
    for name, fig in figures.items():
        path = osp.join(args.out, name)
        write_bytes_atomic(path, figure_png(fig))
        sys.stdout.write(f'wrote {path}\n')
