"""Validation / test dataset for arbitrary-scale SR at any scale (integer or not, in or out of distribution)."""
import math
from os import path as osp
from typing import Dict, Tuple

import numpy as np
import torch
from basicsr.data.data_util import paired_paths_from_folder, paired_paths_from_lmdb
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ..archs.gaussian_util import output_size
from ..errors import DataError
from ..option_checks import BASICSR_DATASET_KEYS, DATAROOT_PREFIX, check_keys, dataset_owner
from .image_source import ImageReader, check_folder, folder_images, lmdb_keys
from .resize import imresize_to, quantize_uint8


def lr_size_for(hr_size: Tuple[int, int], scale: float) -> Tuple[int, int]:
    """LR size for on-the-fly degradation: ``h = floor(H / s)``, ``w = floor(W / s)``.

    The HR image is then cropped (top-left) to ``output_size((h, w), s) = (round(h*s), round(w*s))``, which
    is never larger than ``(H, W)``.
    """
    return tuple(int(math.floor(n / scale + 1e-9)) for n in hr_size)


@DATASET_REGISTRY.register()
class ArbitraryScaleTestDataset(data.Dataset):
    """Whole-image (LR, HR) pairs at one scale ``s`` for validation and testing.

    Without ``dataroot_lq`` the LR is made from the HR on the fly: ``h, w = floor(H/s), floor(W/s)``; the HR
    is cropped top-left to ``H', W' = round(h*s), round(w*s)`` (``output_size``); the LR is the Matlab
    bicubic resize (BasicSR's kernel, antialiased) of that crop to ``h x w``, rounded to 8 bits. With
    ``dataroot_lq`` (protocol A) LR files are paired with HR files by name (BasicSR's
    ``paired_paths_from_folder`` with ``filename_tmpl``, or two LMDBs with the same keys) and the HR is
    cropped top-left to ``output_size(lq size, s)``; an HR smaller than that, or larger by ``s`` or more (an LR made
    at another scale), raises a ``DataError``.

    Args:
        opt (dict): Options (never modified):
            dataroot_gt (str): HR folder or ``.lmdb``.
            scale (float): The SR scale, >= 1 (2, 2.4, 12, 30, ...).
            dataroot_lq (str, optional): LR folder or ``.lmdb``. Default: None (LR made on the fly).
            filename_tmpl (str): LR name from the HR base name, e.g. ``'{}x4'``. Default: '{}'.
            meta_info_file (str, optional): Disk, HR only: image names under dataroot_gt.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``. Default: disk.
            lq_quantize (bool): Round on-the-fly LR to 8 bits. Default: True.

    Items:
        lq (Tensor): [3, h, w], RGB in [0, 1].
        gt (Tensor): [3, H', W'] with ``(H', W') == output_size((h, w), scale)``.
        scale (Tensor): float32 scalar.
        lq_path (str): LR file (or the HR file when the LR is made on the fly); BasicSR names results after it.
        gt_path (str): HR file or LMDB key.
    """

    OPTION_KEYS = frozenset({'dataroot_gt', 'dataroot_lq', 'scale', 'filename_tmpl', 'meta_info_file', 'io_backend',
                             'lq_quantize'})

    def __init__(self, opt: dict) -> None:
        super().__init__()
        check_keys(opt, self.OPTION_KEYS | BASICSR_DATASET_KEYS, dataset_owner(opt, type(self).__name__),
                   (DATAROOT_PREFIX, ))
        self.opt = dict(opt)
        if self.opt.get('scale') is None:
            raise ValueError('ArbitraryScaleTestDataset needs a scale option')
        self.scale = float(self.opt['scale'])
        if not self.scale >= 1:
            raise ValueError(f'scale must be >= 1, got {self.scale}')
        self.lq_quantize = bool(self.opt.get('lq_quantize', True))
        io_backend = dict(self.opt.get('io_backend') or {'type': 'disk'})
        gt_root = check_folder(self.opt.get('dataroot_gt'), 'dataroot_gt')
        lq_root = self.opt.get('dataroot_lq')
        lmdb = io_backend.get('type', 'disk') == 'lmdb'
        if lq_root:
            check_folder(lq_root, 'dataroot_lq')
            self.paths = self._paired_paths(lq_root, gt_root, lmdb)
            self.reader = ImageReader(io_backend, {'lq': lq_root, 'gt': gt_root})
        else:
            names = lmdb_keys(gt_root) if lmdb else folder_images(gt_root, self.opt.get('meta_info_file'))
            self.paths = [{'lq_path': None, 'gt_path': name} for name in names]
            self.reader = ImageReader(io_backend, {'gt': gt_root})

    def _paired_paths(self, lq_root: str, gt_root: str, lmdb: bool) -> list:
        """Sorted (lq_path, gt_path) pairs from BasicSR's helpers; their asserts become ValueErrors."""
        try:
            if lmdb:
                paths = paired_paths_from_lmdb([lq_root, gt_root], ['lq', 'gt'])
            else:
                paths = paired_paths_from_folder([lq_root, gt_root], ['lq', 'gt'], self.opt.get('filename_tmpl', '{}'))
        except AssertionError as err:
            raise ValueError(f'cannot pair LR {lq_root} with HR {gt_root}: {err}') from err
        return sorted(paths, key=lambda p: p['gt_path'])  # BasicSR lists folders in os.scandir order

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, object]:
        lq_path, gt_path = self.paths[index]['lq_path'], self.paths[index]['gt_path']
        gt = self.reader.read(gt_path, 'gt').astype(np.float32) / 255.
        if lq_path is not None:
            lq = self.reader.read(lq_path, 'lq').astype(np.float32) / 255.
            target = output_size(lq.shape[:2], self.scale)
            if gt.shape[0] < target[0] or gt.shape[1] < target[1]:
                raise DataError(f'HR {gt_path} is {gt.shape[0]}x{gt.shape[1]}, smaller than {target[0]}x{target[1]} '
                                f'= LR {lq_path} ({lq.shape[0]}x{lq.shape[1]}) x {self.scale}')
            if any(big - small * self.scale >= self.scale for big, small in zip(gt.shape[:2], lq.shape[:2])):
                # more than the rounding of floor(H / s) or ceil(H / s): the LR was made at another scale
                raise DataError(f'HR {gt_path} is {gt.shape[0]}x{gt.shape[1]}, but LR {lq_path} '
                                f'({lq.shape[0]}x{lq.shape[1]}) x {self.scale:g} is {target[0]}x{target[1]}: the LR '
                                f'looks made at x{gt.shape[0] / lq.shape[0]:.3g}; check the scale of this dataset')
            gt = gt[:target[0], :target[1]]
        else:
            lq_size = lr_size_for(gt.shape[:2], self.scale)
            if min(lq_size) < 1:
                raise DataError(f'HR {gt_path} ({gt.shape[0]}x{gt.shape[1]}) is too small for scale {self.scale}')
            target = output_size(lq_size, self.scale)
            gt = gt[:target[0], :target[1]]
            lq = imresize_to(gt, lq_size)
            lq = quantize_uint8(lq) if self.lq_quantize else lq
            lq_path = gt_path
        gt, lq = img2tensor([np.ascontiguousarray(gt), lq], bgr2rgb=True, float32=True)
        return {
            'lq': lq,
            'gt': gt,
            'scale': torch.tensor(self.scale, dtype=torch.float32),
            'lq_path': lq_path,
            'gt_path': gt_path,
        }

    def __repr__(self) -> str:
        name = osp.basename(str(self.opt.get('dataroot_gt')))
        return f'{type(self).__name__}({name}, x{self.scale:g}, n={len(self)})'
