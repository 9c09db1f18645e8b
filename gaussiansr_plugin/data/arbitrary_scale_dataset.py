"""Training dataset for arbitrary-scale SR: random scale, HR crop, bicubic LR patch and sampled queries."""
import random
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ..errors import DataError
from ..option_checks import BASICSR_DATASET_KEYS, DATAROOT_PREFIX, check_keys, dataset_owner
from .image_source import ImageReader, check_folder, folder_images, lmdb_keys
from .query_sampling import sample_queries
from .resize import imresize_to, quantize_uint8
from .resumable_sampler import SampleKey, seed_rngs
from .scale_sampler import BatchScaleSchedule, draw_scale, scale_of_batch


@DATASET_REGISTRY.register()
class ArbitraryScaleImageDataset(data.Dataset):
    """HR images -> (LR patch, query coordinates, cells, RGB targets) at a random scale (LIIF / GaussianSR).

    Per item: a scale ``s ~ U(scale_min, scale_max)``; an HR crop of ``S = round(lq_size * s)`` pixels at a
    random position; BasicSR's ``augment`` (hflip / rot90) on the crop; the LR patch, ``lq_size x lq_size``,
    made by Matlab bicubic (BasicSR's ``imresize`` kernel with antialiasing, exact output size) and rounded to
    8 bits; then ``sample_q`` HR pixels drawn without replacement as queries. The effective scale ``S /
    lq_size`` is returned (it differs from the drawn ``s`` by the rounding of ``S``). All random numbers come
    from Python's ``random``, which BasicSR's ``worker_init_fn`` seeds. Unreadable images, missing LMDB keys and
    images smaller than the largest crop ``round(lq_size * scale_max)`` raise a ``DataError`` (a ``ValueError``)
    naming the file or key on their first read, unless ``skip_bad_images`` is on. Unknown option keys raise a
    ``ValueError`` at construction.

    Args:
        opt (dict): Options (never modified):
            dataroot_gt (str): HR folder, or a ``.lmdb`` folder made by BasicSR's ``make_lmdb_from_imgs``.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``. Default: disk.
            meta_info_file (str, optional): Disk only: image names (first token per line) under dataroot_gt.
            lq_size (int): LR patch size h = w. Default: 48.
            scale_min (float): Smallest scale, >= 1. Default: 1.
            scale_max (float): Largest scale. Default: 4.
            sample_q (int | None): Queries per item; None (``~``) returns every HR pixel in raster order
                (then items of one batch need equal crops: ``scale_sampling: batch`` or batch size 1). Default: 2304.
            use_hflip (bool): Random horizontal flip. Default: True.
            use_rot (bool): Random vertical flip and transpose (rot90). Default: True.
            scale_sampling (str): ``item`` (a scale per item) or ``batch`` (one scale per batch, the same on
                every rank; see ``BatchScaleSchedule``). Default: 'item'.
            scale_seed (int): Seed of the per-batch scale stream; falls back to ``manual_seed`` if the dataset
                options hold one, else 0.
            lq_quantize (bool): Round the LR patch to 8 bits (like LR files on disk). Default: True.
            cache (bool): Decode every image once at construction and keep it in memory (uint8). Default: False.
            skip_bad_images (bool): Replace an unusable image (unreadable, missing or too small) by the next
                usable one instead of stopping; each is logged once per process (with a running count). With
                ``cache`` they are dropped at construction. Default: False.

    Items:
        lq (Tensor): LR patch, [3, lq_size, lq_size], RGB in [0, 1].
        coord (Tensor): Query pixel centres in the HR crop, (y, x) in [-1, 1], [Q, 2].
        cell (Tensor): ``(2/S, 2/S)`` per query, [Q, 2].
        gt_q (Tensor): RGB targets in [0, 1], [Q, 3].
        scale (Tensor): Effective scale ``S / lq_size``, float32 scalar.
        gt_path (str): Image path or LMDB key.
    """

    reads_sample_keys = True  # ResumableSampler hands it SampleKey items: per-item seeds, exact resume

    OPTION_KEYS = frozenset({
        'dataroot_gt', 'io_backend', 'meta_info_file', 'lq_size', 'scale_min', 'scale_max', 'sample_q', 'use_hflip',
        'use_rot', 'scale_sampling', 'scale_seed', 'manual_seed', 'lq_quantize', 'cache', 'skip_bad_images'
    })

    def __init__(self, opt: dict) -> None:
        super().__init__()
        check_keys(opt, self.OPTION_KEYS | BASICSR_DATASET_KEYS, dataset_owner(opt, type(self).__name__),
                   (DATAROOT_PREFIX, ))
        self.opt = dict(opt)
        io_backend = dict(self.opt.get('io_backend') or {'type': 'disk'})
        self.root = check_folder(self.opt.get('dataroot_gt'), 'dataroot_gt')
        if io_backend.get('type', 'disk') == 'lmdb':
            self.paths = lmdb_keys(self.root)
        else:
            self.paths = folder_images(self.root, self.opt.get('meta_info_file'))
        self.reader = ImageReader(io_backend, {'gt': self.root})
        self._parse_sizes()
        self.use_hflip = bool(self.opt.get('use_hflip', True))
        self.use_rot = bool(self.opt.get('use_rot', True))
        self.lq_quantize = bool(self.opt.get('lq_quantize', True))
        self.scale_sampling = self.opt.get('scale_sampling', 'item')
        if self.scale_sampling not in ('item', 'batch'):
            raise ValueError(f"scale_sampling must be 'item' or 'batch', got {self.scale_sampling!r}")
        seed = self.opt.get('scale_seed', self.opt.get('manual_seed', 0))
        self.batch_scales = BatchScaleSchedule(self.scale_min, self.scale_max, 0 if seed is None else seed)
        self.skip_bad_images = bool(self.opt.get('skip_bad_images', False))
        self._bad: Dict[int, str] = {}  # index -> why it is unusable (this process)
        self.cache: Optional[List[np.ndarray]] = None
        if self.opt.get('cache', False):
            self._fill_cache()

    def _fill_cache(self) -> None:
        images, paths = [], []
        for index, path in enumerate(self.paths):
            try:
                images.append(self._read(index))
            except DataError as err:
                if not self.skip_bad_images:
                    raise
                self._note_bad(index, err)
                continue
            paths.append(path)
        if not paths:
            raise DataError(f'skip_bad_images: none of the {len(self.paths)} images under {self.root} is usable')
        self.cache, self.paths = images, paths
        self._bad = {}

    def _parse_sizes(self) -> None:
        self.lq_size = int(self.opt.get('lq_size', 48))
        self.scale_min = float(self.opt.get('scale_min', 1))
        self.scale_max = float(self.opt.get('scale_max', 4))
        if self.lq_size < 1:
            raise ValueError(f'lq_size must be >= 1, got {self.lq_size}')
        if not 1 <= self.scale_min <= self.scale_max:
            raise ValueError(f'need 1 <= scale_min <= scale_max, got scale_min={self.scale_min}, '
                             f'scale_max={self.scale_max}')
        self.max_crop = self.crop_size(self.scale_max)
        sample_q = self.opt.get('sample_q', 2304)
        self.sample_q = None if sample_q is None else int(sample_q)
        min_pixels = self.crop_size(self.scale_min)**2
        if self.sample_q is not None and not 0 < self.sample_q <= min_pixels:
            raise ValueError(f'sample_q={self.sample_q} must be in [1, {min_pixels}]: the smallest HR crop '
                             f'(lq_size {self.lq_size} x scale_min {self.scale_min}) has {min_pixels} pixels')

    def crop_size(self, scale: float) -> int:
        """HR crop side ``round(lq_size * scale)`` for a scale."""
        return int(round(self.lq_size * scale))

    def _read(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 BGR [H, W, 3], checked against the largest crop."""
        img = self.reader.read(self.paths[index], 'gt')
        height, width = img.shape[:2]
        if min(height, width) < self.max_crop:
            raise DataError(f'image {self.paths[index]} is {height}x{width}, smaller than the largest HR crop '
                            f'{self.max_crop}x{self.max_crop} (lq_size {self.lq_size} x scale_max {self.scale_max});'
                            ' remove it or lower scale_max / lq_size')
        return img

    def _note_bad(self, index: int, err: DataError) -> None:
        self._bad[index] = str(err)
        get_root_logger().warning(f'skip_bad_images: skipped {self.paths[index]} ({len(self._bad)} skipped in this '
                                  f'process so far): {err}')

    def _usable_image(self, index: int) -> Tuple[int, np.ndarray]:
        """(index, image) of item ``index``; with ``skip_bad_images``, of the first usable image from there on."""
        if self.cache is not None:
            return index, self.cache[index]
        if not self.skip_bad_images:
            return index, self._read(index)
        for step in range(len(self.paths)):
            candidate = (index + step) % len(self.paths)
            if candidate in self._bad:
                continue
            try:
                return candidate, self._read(candidate)
            except DataError as err:
                self._note_bad(candidate, err)
        raise DataError(f'skip_bad_images: none of the {len(self.paths)} images under {self.root} is usable')

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, object]:
        return self.make_item(index, draw_scale(self.scale_min, self.scale_max))

    def __getitems__(self, keys: Sequence[Union[int, SampleKey]]) -> List[Dict[str, object]]:
        """A whole batch (PyTorch's fetcher calls this): with ``scale_sampling: batch`` one scale for all.

        ``SampleKey`` items (from ``ResumableSampler``) seed each item's random draws, and the batch scale is a
        function of (seed, epoch, batch in the epoch), so both survive worker restarts and resumes; with plain
        indices ``BatchScaleSchedule`` counts batches.
        """
        first = keys[0]
        scale = None
        if self.scale_sampling == 'batch':
            if isinstance(first, SampleKey):
                batch = f'{first.epoch}-{first.step // len(keys)}'
                scale = scale_of_batch(batch, self.scale_min, self.scale_max, self.batch_scales.seed)
            else:
                scale = self.batch_scales.next_scale()
        items = []
        for key in keys:
            index = key
            if isinstance(key, SampleKey):
                seed_rngs(key.seed)
                index = key.index
            items.append(self.make_item(index, draw_scale(self.scale_min, self.scale_max) if scale is None else scale))
        return items

    def make_item(self, index: int, scale: float) -> Dict[str, object]:
        """Build item ``index`` at the drawn ``scale`` (crop position, flips and queries from ``random``)."""
        index, img = self._usable_image(index)
        size = self.crop_size(scale)
        top = random.randint(0, img.shape[0] - size)
        left = random.randint(0, img.shape[1] - size)
        hr = img[top:top + size, left:left + size].astype(np.float32) / 255.  # a copy: augment works in place
        hr = augment(hr, self.use_hflip, self.use_rot)
        lq = imresize_to(hr, (self.lq_size, self.lq_size))
        lq = quantize_uint8(lq) if self.lq_quantize else lq
        hr, lq = img2tensor([hr, lq], bgr2rgb=True, float32=True)
        coord, cell, gt_q = sample_queries(hr, self.sample_q)
        return {
            'lq': lq,
            'coord': coord,
            'cell': cell,
            'gt_q': gt_q,
            'scale': torch.tensor(size / self.lq_size, dtype=torch.float32),
            'gt_path': self.paths[index],
        }
