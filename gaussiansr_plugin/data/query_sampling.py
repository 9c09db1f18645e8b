"""Query sampling for arbitrary-scale training: pixel-centre coordinates, cells and RGB targets of an HR patch."""
import random
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..archs.gaussian_util import make_cell, make_coord


def sample_queries(hr: Tensor, sample_q: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Pick query pixels of an HR patch (LIIF's convention).

    Pixel ``(i, j)`` of an ``H x W`` patch has coordinate ``(-1 + (2i+1)/H, -1 + (2j+1)/W)`` and cell
    ``(2/H, 2/W)``. With ``sample_q`` the pixels are drawn without replacement from Python's ``random``
    (seeded by BasicSR's ``worker_init_fn``); with ``None`` every pixel is returned in raster order, so
    ``gt_q.t().reshape(C, H, W)`` is the patch again.

    Args:
        hr (Tensor): HR patch, [C, H, W].
        sample_q (int, optional): Number of queries Q, at most H*W. None: all H*W pixels. Default: None.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``coord`` [Q, 2] (y, x) in [-1, 1], ``cell`` [Q, 2] and ``gt_q`` [Q, C].
    """
    if hr.ndim != 3:
        raise ValueError(f'hr must be [C, H, W], got shape {tuple(hr.shape)}')
    chans, height, width = hr.shape
    coord = make_coord((height, width), dtype=hr.dtype)  # [H*W, 2]
    gt_q = hr.reshape(chans, -1).t()  # [H*W, C]
    if sample_q is not None:
        if not 0 < sample_q <= height * width:
            raise ValueError(f'sample_q={sample_q} must be in [1, {height * width}] for a {height}x{width} patch')
        index = torch.tensor(random.sample(range(height * width), sample_q), dtype=torch.long)
        coord, gt_q = coord.index_select(0, index), gt_q.index_select(0, index)
    return coord, make_cell(coord.shape[0], (height, width), dtype=hr.dtype), gt_q.contiguous()
