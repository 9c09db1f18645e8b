"""``gaussiansr demo``: prepare the offline demo photos, train briefly (or take the shipped model), then upscale a
held-out photo at x3 and x2.5 and compare it with bicubic.

Training is BasicSR's own ``train_pipeline``, run exactly as ``basicsr train -opt <yml>`` would, on an option
file written from the packaged template ``configs/demo_train.yml`` (the same file as ``options/demo_train.yml``)
with the data folders, the device and the iteration count filled in. Experiments go to ``./experiments/``,
images to ``./results/demo/``.
"""
import argparse
import math
import os
import sys
import tempfile
from os import path as osp
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml

from basicsr.metrics import calculate_psnr
from ..archs.gaussian_util import output_size
from ..data.arbitrary_scale_test_dataset import lr_size_for
from ..data.demo_photos import prepare_demo_photos
from ..data.resize import imresize_to, quantize_uint8
from ..errors import TrainingDiverged, UserError
from ..inference.checkpoint import LoadedModel, load_model
from ..inference.image_io import Picture, read_image, write_image
from ..inference.upscaler import RenderPlan, render, resolve_device, rgb_to_tensor
from . import basicsr_cli
from .arguments import one_line_errors, positive_int
from .demo_console import training_progress

TEMPLATE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'demo_train.yml')
OPTION_FILE = 'demo_train.yml'
EVAL_PHOTO = osp.join('val', 'chelsea.png')  # held out from training
EVAL_SCALES = (3.0, 2.5)
RESULTS = osp.join('results', 'demo')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``gaussiansr demo``."""
    one_line_errors(parser)
    parser.add_argument('--pretrained', action='store_true', help='skip training and use the shipped model')
    parser.add_argument(
        '--iters',
        type=positive_int,
        default=None,
        metavar='N',
        help='training iterations. Default: 1500 (about two minutes on two CPU cores)')
    parser.add_argument(
        '--data',
        default=osp.join('datasets', 'demo'),
        metavar='DIR',
        help='demo photos (written there if missing). Default: datasets/demo')
    parser.add_argument('--device', default='auto', metavar='DEVICE', help='auto, cpu, cuda or cuda:N. Default: auto')


def demo_options(data_dir: str, device: torch.device, iters: Optional[int]) -> Dict[str, Any]:
    """The packaged demo options with the training folder, device and iteration count filled in.

    The validation sections are dropped: the demo evaluates the held-out photo itself afterwards.
    """
    with open(TEMPLATE) as f:
        opt = yaml.safe_load(f)
    opt['num_gpu'] = 1 if device.type == 'cuda' else 0
    opt['datasets'].pop('val', None)
    opt.pop('val', None)
    opt['datasets']['train']['dataroot_gt'] = osp.abspath(osp.join(data_dir, 'train'))
    if iters:
        opt['train']['total_iter'] = iters
        opt['train']['scheduler']['periods'] = [iters]
    return opt


def train(data_dir: str, device: torch.device, iters: Optional[int]) -> LoadedModel:
    """Run BasicSR's training on the demo options; returns the final model (``net_g_latest.pth``)."""
    opt = demo_options(data_dir, device, iters)
    sys.stdout.write(f"GaussianSR demo: training {opt['train']['total_iter']} iterations on {device.type} with "
                     f"BasicSR's train_pipeline; options, network and log in experiments/{opt['name']}/\n")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix='gaussiansr_demo_') as tmp:
        yml = osp.join(tmp, OPTION_FILE)
        with open(yml, 'w') as f:
            yaml.safe_dump(opt, f, sort_keys=False)
        try:
            with training_progress(opt['train']['total_iter']):
                basicsr_cli.run('train', ['-opt', yml])
        except TrainingDiverged as exc:
            raise UserError(str(exc)) from exc
    root = osp.join(os.getcwd(), 'experiments', opt['name'])
    return load_model(osp.join(root, 'models', 'net_g_latest.pth'), osp.join(root, OPTION_FILE), device)


def _uint8(rgb: np.ndarray) -> np.ndarray:
    return (quantize_uint8(rgb) * 255).round().astype(np.uint8)


def evaluate(model: LoadedModel, hr_path: str, device: torch.device) -> List[Dict[str, Any]]:
    """Upscale the held-out photo at ``EVAL_SCALES`` (LR made by Matlab bicubic from it), write the LR, bicubic
    and GaussianSR images to ``RESULTS`` and return PSNR-Y (BasicSR's, crop ceil(s)) of bicubic and ours."""
    hr = read_image(hr_path).rgb
    name = osp.splitext(osp.basename(hr_path))[0]
    rows = []
    for scale in EVAL_SCALES:
        lr_size = lr_size_for(hr.shape[:2], scale)
        size = output_size(lr_size, scale)
        hr_crop = hr[:size[0], :size[1]]
        gt = _uint8(hr_crop)
        lr = quantize_uint8(imresize_to(hr_crop, lr_size))
        out = render(model.net, rgb_to_tensor(lr, device), size, RenderPlan(model.net.chunk_size))
        ours = _uint8(out[0].permute(1, 2, 0).cpu().numpy())
        bicubic = _uint8(imresize_to(lr, size))
        crop = math.ceil(scale)
        row = dict(scale=scale, lr=lr_size, size=size)
        for key, img in (('bicubic', bicubic), ('ours', ours)):
            row[key] = calculate_psnr(img[..., ::-1], gt[..., ::-1], crop, input_order='HWC', test_y_channel=True)
        for label, img in (('lr', _uint8(lr)), ('bicubic', bicubic), ('gaussiansr', ours)):
            path = osp.join(RESULTS, f'{name}_x{scale:g}_{label}.png')
            write_image(path, Picture(rgb=img.astype(np.float32) / 255, alpha=None, gray=False, dtype='uint8'))
        rows.append(row)
    return rows


def format_table(rows: List[Dict[str, Any]]) -> str:
    lines = [
        '| scale | LR | output | bicubic PSNR-Y (dB) | GaussianSR PSNR-Y (dB) | gain (dB) |',
        '|--:|--:|--:|--:|--:|--:|'
    ]
    for r in rows:
        lines.append(f'| x{r["scale"]:g} | {r["lr"][1]}x{r["lr"][0]} | {r["size"][1]}x{r["size"][0]} | '
                     f'{r["bicubic"]:.2f} | {r["ours"]:.2f} | {r["ours"] - r["bicubic"]:+.2f} |')
    return '\n'.join(lines) + '\n'


def run(args: argparse.Namespace) -> None:
    """Prepare the photos, train (or load the shipped model), evaluate and print the table."""
    if args.pretrained and args.iters:
        raise UserError('--iters sets the training length; --pretrained skips training')
    device = resolve_device(args.device)
    model = load_model(None, None, device) if args.pretrained else None  # a missing model fails before any work
    prepare_demo_photos(args.data)
    if model is None:
        model = train(args.data, device, args.iters)
    hr_path = osp.join(args.data, EVAL_PHOTO)
    rows = evaluate(model, hr_path, device)
    sys.stdout.write(f'\nGaussianSR demo: {osp.basename(hr_path)} (held out from training), model {model.path}\n'
                     f'PSNR on the Y channel (BasicSR calculate_psnr, crop_border = ceil(scale)); images in '
                     f'{RESULTS}/\n\n' + format_table(rows))
