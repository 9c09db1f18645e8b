"""Coordinate helpers shared by the arch, the datasets and the model (LIIF's convention)."""
from typing import Optional, Sequence

import torch
from torch import Tensor


def make_coord(shape: Sequence[int], flatten: bool = True, device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates of an ``H x W`` grid in [-1, 1], (y, x) order.

    Pixel ``k`` of ``n`` has centre ``-1 + (2k + 1) / n``.

    Args:
        shape (Sequence[int]): (H, W).
        flatten (bool): Return [H*W, 2] instead of [H, W, 2]. Default: True.

    Returns:
        Tensor: [H*W, 2] or [H, W, 2].
    """
    # the odd numbers 2k + 1 made by arange itself: the same values in two kernels fewer per axis
    axes = [-1 + torch.arange(1, 2 * n, 2, device=device, dtype=dtype) / n for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1)
    return grid.reshape(-1, grid.shape[-1]) if flatten else grid


def make_cell(num: int, size: Sequence[int], device: Optional[torch.device] = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Cell size ``(2/H, 2/W)`` of an ``H x W`` output for ``num`` queries, [num, 2]."""
    return pair_tensor(2.0 / size[0], 2.0 / size[1], device, dtype).expand(num, 2).clone()


def pair_tensor(first: float, second: float, device: Optional[torch.device] = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """``[first, second]`` made on ``device`` by two fill kernels. ``torch.tensor(list, device='cuda')`` and
    ``pair[1] = value`` copy from pageable host memory, which waits for the GPU to drain its queue and cannot be
    captured in a CUDA graph; ``fill_`` passes the value as a kernel argument."""
    pair = torch.full((2,), first, device=device, dtype=dtype)
    pair[1:].fill_(second)
    return pair


def output_size(lr_size: Sequence[int], scale: float) -> tuple:
    """The HR size for ``scale``: ``round(h * s) x round(w * s)`` (at least 1 pixel)."""
    return tuple(max(1, int(round(n * scale))) for n in lr_size)
