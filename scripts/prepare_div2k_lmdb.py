#!/usr/bin/env python
"""Pack DIV2K (or any image folder) into a BasicSR LMDB, optionally cut into sub-images first.

The LMDB is written by BasicSR's ``basicsr.utils.lmdb_util.make_lmdb_from_imgs`` (keys = file names without
extension, ``meta_info.txt`` alongside), so ``io_backend: {type: lmdb}`` reads it in any BasicSR dataset.

Examples:
    # training HR, cut into 480x480 sub-images with step 240 (BasicSR's DIV2K recipe)
    python scripts/prepare_div2k_lmdb.py --input datasets/DIV2K/DIV2K_train_HR \\
        --output datasets/DIV2K/DIV2K_train_HR_sub.lmdb --crop-size 480 --step 240
    # validation HR + the official bicubic LR x4 (keys 0801x4 -> 0801 to match the HR)
    python scripts/prepare_div2k_lmdb.py --input datasets/DIV2K/DIV2K_valid_HR \\
        --output datasets/DIV2K/DIV2K_valid_HR.lmdb --lq datasets/DIV2K/DIV2K_valid_LR_bicubic/X4
"""
import argparse
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from os import path as osp
from typing import List, Optional, Sequence

import cv2
from PIL import Image
from tqdm import tqdm

# the same as gaussiansr_plugin.data.image_source.IMG_EXTENSIONS (the package is imported only to write LMDBs)
IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


class DataError(Exception):
    """A problem with the user's folders: reported as one line, exit status 2."""


def list_images(folder: str) -> List[str]:
    """Image file names in ``folder`` (not recursive), sorted; DataError if the folder is missing or empty."""
    if not osp.isdir(folder):
        raise DataError(f'folder not found: {folder}')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMG_EXTENSIONS) and not n.startswith('.'))
    if not names:
        raise DataError(f'no images ({", ".join(IMG_EXTENSIONS)}) in {folder}')
    return names


def crop_positions(length: int, crop: int, step: int, thresh: int) -> List[int]:
    """Start offsets of crops along one axis: every ``step``, plus one flush with the end if more than
    ``thresh`` pixels would be left over. An axis shorter than ``crop`` gives one crop starting at 0."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def crop_one(src: str, out_dir: str, crop: int, step: int, thresh: int) -> int:
    """Cut one image into sub-images ``<name>_s001.png, ...`` (row-major order); returns how many."""
    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f'cannot read image: {src}')
    base = osp.splitext(osp.basename(src))[0]
    count = 0
    for top in crop_positions(img.shape[0], crop, step, thresh):
        for left in crop_positions(img.shape[1], crop, step, thresh):
            count += 1
            patch = img[top:top + crop, left:left + crop]
            if not cv2.imwrite(osp.join(out_dir, f'{base}_s{count:03d}.png'), patch, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise DataError(f'cannot write sub-images to {out_dir}')
    return count


def extract_subimages(folder: str, out_dir: str, crop: int, step: int, thresh: int, n_thread: int = 1) -> int:
    """Cut every image of ``folder`` into sub-images in ``out_dir`` (tqdm progress); returns the total count."""
    names = list_images(folder)
    with ThreadPoolExecutor(max(1, n_thread)) as pool:  # cv2 releases the GIL while decoding / encoding
        jobs = pool.map(lambda n: crop_one(osp.join(folder, n), out_dir, crop, step, thresh), names)
        return sum(tqdm(jobs, total=len(names), desc=f'crop {crop}/{step}', unit='img'))


def estimate_map_size(folder: str, names: Sequence[str]) -> int:
    """An LMDB map size that surely fits the images: twice their raw size (from headers) plus slack."""
    raw = 0
    for name in names:
        with Image.open(osp.join(folder, name)) as img:
            raw += img.width * img.height * len(img.getbands()) * (2 if img.mode.startswith('I;16') else 1)
    return 2 * raw + 4096 * len(names) + (64 << 20)


def folder_to_lmdb(folder: str, lmdb_path: str, keys: Optional[Sequence[str]] = None, n_thread: int = 1) -> int:
    """Write every image of ``folder`` to ``lmdb_path`` with BasicSR's ``make_lmdb_from_imgs``.

    Args:
        folder (str): Image folder.
        lmdb_path (str): Output, must end in ``.lmdb`` and not exist.
        keys (Sequence[str], optional): LMDB keys in sorted-file order. Default: file names without extension.
        n_thread (int): > 1 reads all images into memory first with that many processes (BasicSR's
            ``multiprocessing_read``). Default: 1.

    Returns:
        int: Number of images written.
    """
    if not lmdb_path.endswith('.lmdb'):
        raise DataError(f'the output must end in .lmdb: {lmdb_path}')
    if osp.exists(lmdb_path):
        raise DataError(f'output already exists (remove it first): {lmdb_path}')
    names = list_images(folder)
    keys = list(keys) if keys is not None else [osp.splitext(n)[0] for n in names]
    os.makedirs(osp.dirname(osp.abspath(lmdb_path)), exist_ok=True)
    import gaussiansr_plugin  # noqa: F401  (slow: torch + BasicSR; installs the torchvision alias BasicSR needs)
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    make_lmdb_from_imgs(
        folder,
        lmdb_path,
        names,
        keys,
        multiprocessing_read=n_thread > 1,
        n_thread=max(1, n_thread),
        map_size=estimate_map_size(folder, names))
    return len(names)


def lq_keys(lq_names: Sequence[str], hr_keys: Sequence[str]) -> List[str]:
    """Keys for LR files: the file stem, without a trailing ``x<scale>`` when that matches an HR key."""
    hr = set(hr_keys)
    keys = []
    for name in lq_names:
        stem = osp.splitext(name)[0]
        short = re.sub(r'x\d+(\.\d+)?$', '', stem)
        keys.append(stem if stem in hr or short not in hr else short)
    missing, extra = sorted(hr - set(keys)), sorted(set(keys) - hr)
    if missing or extra:
        raise DataError(f'LR and HR names do not match: {len(missing)} HR without LR (e.g. {missing[:3]}), '
                        f'{len(extra)} LR without HR (e.g. {extra[:3]})')
    return keys


def lq_lmdb_path(output: str, lq_dir: str) -> str:
    """``<dir of output>/<parent>_<leaf>.lmdb`` for an LR folder, e.g. DIV2K_valid_LR_bicubic_X4.lmdb."""
    parts = osp.normpath(osp.abspath(lq_dir)).split(os.sep)[-2:]
    return osp.join(osp.dirname(osp.abspath(output)), '_'.join(p for p in parts if p) + '.lmdb')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--input', required=True, help='HR image folder, e.g. datasets/DIV2K/DIV2K_train_HR')
    parser.add_argument('--output', required=True, help='output LMDB folder, ending in .lmdb')
    parser.add_argument(
        '--lq',
        action='append',
        default=[],
        metavar='DIR',
        help='an LR folder to pack too (repeatable), written next to --output as <parent>_<leaf>.lmdb;'
        '\nLR names like 0801x4.png get the HR key 0801')
    parser.add_argument('--crop-size', type=int, default=None, help='cut HR images into sub-images of this size first')
    parser.add_argument('--step', type=int, default=None, help='sub-image step (default: crop-size / 2)')
    parser.add_argument(
        '--thresh-size',
        type=int,
        default=0,
        help='add a last crop flush with the border when more than this many pixels remain')
    parser.add_argument(
        '--n-thread',
        type=int,
        default=1,
        help='threads for cropping; > 1 also reads all images into memory before writing the LMDB')
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Check every input and output first, so that a bad argument never leaves a partial LMDB behind."""
    hr_keys = [osp.splitext(n)[0] for n in list_images(args.input)]
    lq_jobs = [(d, lq_lmdb_path(args.output, d), lq_keys(list_images(d), hr_keys)) for d in args.lq]
    for out in [args.output] + [job[1] for job in lq_jobs]:
        if not out.endswith('.lmdb'):
            raise DataError(f'the output must end in .lmdb: {out}')
        if osp.exists(out):
            raise DataError(f'output already exists (remove it first): {out}')
    if args.crop_size is None:
        folder_to_lmdb(args.input, args.output, n_thread=args.n_thread)
    else:
        if args.lq:
            raise DataError('--lq cannot be combined with --crop-size (the training set makes its LR on the fly)')
        if args.crop_size < 1 or (args.step is not None and args.step < 1):
            raise DataError('--crop-size and --step must be positive')
        step = args.step or max(1, args.crop_size // 2)
        parent = osp.dirname(osp.abspath(args.output))
        os.makedirs(parent, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix='subimages_', dir=parent) as tmp:
            extract_subimages(args.input, tmp, args.crop_size, step, args.thresh_size, args.n_thread)
            folder_to_lmdb(tmp, args.output, n_thread=args.n_thread)
    for lq_dir, out, keys in lq_jobs:
        folder_to_lmdb(lq_dir, out, keys=keys, n_thread=args.n_thread)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except DataError as err:
        print(f'prepare_div2k_lmdb: error: {err}', file=sys.stderr)
        return 2
    print(f'done: {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
