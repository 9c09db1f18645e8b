"""``gaussiansr upscale IN OUT (--scale S | --size WxH)``: super-resolve an image, or every image of a folder."""
import argparse
import sys
import time
from typing import List, Optional, Set, Tuple

import torch
from tqdm import tqdm

from ..errors import UserError
from ..inference.batch import check_destination, plan_jobs
from ..inference.checkpoint import LoadedModel, load_model
from ..inference.image_header import ImageHeader, read_header
from ..inference.image_io import read_image, write_image
from ..inference.memory_plan import fit_to_memory
from ..inference.progress import ChunkProgress
from ..inference.upscaler import RenderPlan, keeps_aspect, resolve_device, target_size, upscale_picture
from ..precision import DEFAULT_PRECISION, PRECISIONS
from .arguments import (add_chunk_size_argument, add_model_arguments, image_size, non_negative_int, one_line_errors,
                        positive_float, positive_int)

DEFAULT_MAX_PIXELS = 200_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``gaussiansr upscale``."""
    one_line_errors(parser)
    parser.add_argument('input', metavar='IN', help='an image (PNG, JPEG, TIFF, WebP, BMP) or a folder of images')
    parser.add_argument(
        'output',
        metavar='OUT',
        help='output image (its extension picks the format) or, for a folder IN, output folder')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--scale', type=positive_float, help='scale factor, any positive number (2, 3.5, 12, ...)')
    target.add_argument('--size', type=image_size, metavar='WxH', help='exact output size, e.g. 1920x1080')
    parser.add_argument(
        '--keep-aspect',
        action='store_true',
        help="with --size: the largest output of the input's aspect ratio that fits inside WxH")
    add_model_arguments(parser)
    parser.add_argument(
        '--tile',
        type=positive_int,
        default=None,
        metavar='N',
        help='encode the LR image in N x N tiles (bounded memory for large inputs)')
    parser.add_argument(
        '--tile-overlap',
        type=non_negative_int,
        default=16,
        metavar='N',
        help='LR pixels of context around each tile. Default: 16')
    add_chunk_size_argument(
        parser, None, "queries rendered at once, at most (fewer on a GPU short of free memory). Default: the model's "
        '(131072 for the paper configuration)')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help='fp32 (exact), tf32 (TF32 tensor cores on CUDA) or bf16 (autocast); docs/usage.md gives what each costs '
        f'in PSNR. Default: {DEFAULT_PRECISION}')
    parser.add_argument(
        '--max-pixels',
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar='N',
        help='refuse inputs or outputs larger than this many pixels (checked from the file header, before '
        f'decoding). Default: {DEFAULT_MAX_PIXELS:.0e}')


def _warn(message: str, seen: Set[str]) -> None:
    """One ``warning:`` line on stderr per distinct message (kept clear of the progress bar)."""
    if message not in seen:
        seen.add(message)
        tqdm.write(f'warning: {message}', file=sys.stderr)


def _upscale_and_write(model: LoadedModel, src: str, header: ImageHeader, size: Tuple[int, int], dst: str,
                       plan: RenderPlan, device: torch.device, seen: Set[str],
                       progress: Optional[ChunkProgress] = None) -> None:
    """Fit the plan to the host memory before anything is decoded (``memory_plan``), then decode, upscale and
    write."""
    plan, note = fit_to_memory(model.net, header.size, size, plan, device.type)
    if note:
        _warn(f'{dst}: {note}', seen)
    picture = read_image(src, header)
    for note in write_image(dst, upscale_picture(model.net, picture, size, plan, device, progress)):
        _warn(f'{dst}: {note}', seen)


def _plan(args: argparse.Namespace, model: LoadedModel) -> RenderPlan:
    return RenderPlan(
        chunk_size=args.chunk_size or model.net.chunk_size, tile=args.tile, tile_overlap=args.tile_overlap,
        precision=args.precision)


def _checked_size(name: str, lr_size: Tuple[int, int], args: argparse.Namespace) -> Tuple[int, int]:
    """The output size for an input of ``lr_size`` (h, w); both must stay within ``--max-pixels``."""
    pixels = lr_size[0] * lr_size[1]
    if pixels > args.max_pixels:
        raise UserError(f'{name} is {lr_size[1]}x{lr_size[0]} = {pixels:.3g} pixels, above --max-pixels '
                        f'{args.max_pixels:.3g}; downscale it first or raise --max-pixels')
    return target_size(lr_size, args.scale, args.size, args.max_pixels, args.keep_aspect)


def _checked_header(src: str, args: argparse.Namespace, seen: Set[str]) -> Tuple[ImageHeader, Tuple[int, int]]:
    """The header of an image and its output size, both checked against ``--max-pixels`` before anything is
    decoded. An animated image and a ``--size`` of another aspect ratio are noted."""
    header = read_header(src)
    size = _checked_size(src, header.size, args)
    if header.animated:
        _warn(f'{src} is animated: only its first frame is upscaled', seen)
    (h, w), (out_h, out_w) = header.size, size
    if args.size and not keeps_aspect(header.size, size):
        _warn(f'{src}: --size {out_w}x{out_h} changes the aspect ratio ({w}x{h} is {w / h:.3g}:1, the output '
              f'{out_w / out_h:.3g}:1); --keep-aspect fits the image inside {out_w}x{out_h} instead', seen)
    return header, size


def run(args: argparse.Namespace) -> None:
    """Upscale one image (with a progress bar over its chunks), or every image of a folder (a bar over the images;
    failures are collected, then reported)."""
    start = time.perf_counter()
    if args.keep_aspect and not args.size:
        raise UserError('--keep-aspect fits the image inside --size WxH; it needs --size')
    device = resolve_device(args.device)
    jobs, is_folder = plan_jobs(args.input, args.output)
    seen: Set[str] = set()
    if not is_folder:
        src, dst = jobs[0]
        header, size = _checked_header(src, args, seen)  # check the header and the size before the model loads
        model = load_model(args.model, args.config, device)
        progress = ChunkProgress(f'{size[1]}x{size[0]}')
        try:
            _upscale_and_write(model, src, header, size, dst, _plan(args, model), device, seen, progress)
        finally:
            progress.close()
        sys.stdout.write(f'wrote {dst} ({size[1]}x{size[0]} from {header.size[1]}x{header.size[0]}) in '
                         f'{time.perf_counter() - start:.1f} s\n')
        return
    model = load_model(args.model, args.config, device)
    plan = _plan(args, model)
    failures: List[str] = []
    for src, dst in tqdm(jobs, desc='upscale', unit='img', file=sys.stderr, dynamic_ncols=True):
        try:
            check_destination(dst, args.output)
            header, size = _checked_header(src, args, seen)
            _upscale_and_write(model, src, header, size, dst, plan, device, seen)
        except UserError as exc:
            failures.append(str(exc))
            _warn(f'skipped: {exc}', seen)
    sys.stdout.write(f'wrote {len(jobs) - len(failures)} image(s) to {args.output} in '
                     f'{time.perf_counter() - start:.1f} s\n')
    if failures:
        raise UserError(f'{len(failures)} of {len(jobs)} image(s) failed, the first: {failures[0]}')
