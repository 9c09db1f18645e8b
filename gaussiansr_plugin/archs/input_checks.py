"""Checks of what enters ``GaussianSR.upsample``: one ``ValueError`` / ``TypeError`` naming the argument instead of
a ``RuntimeError`` from deep inside PyTorch, or a silent wrong result (uint8 pixels, a negative chunk)."""
import numbers
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..option_checks import check_int_option


def check_upsample_args(net: nn.Module, lq: Tensor, size: Sequence[int], chunk_size: Optional[int],
                        tile: Optional[int], tile_overlap: int) -> None:
    """Raise unless ``lq`` is [B, 3, h, w] float on the network's device and dtype (any dtype under autocast),
    ``size`` two ints >= 1, ``chunk_size`` and ``tile`` None or ints >= 1 and ``tile_overlap`` an int >= 0."""
    if not isinstance(lq, Tensor):
        raise TypeError(f'lq must be a torch.Tensor [B, 3, h, w], got {type(lq).__name__}')
    if lq.dim() != 4 or lq.shape[1] != 3 or min(lq.shape[-2:], default=0) < 1:
        raise ValueError(f'lq must have shape [B, 3, h, w] (RGB, h, w >= 1), got {tuple(lq.shape)}')
    if not lq.is_floating_point():
        raise TypeError(f'lq must be a float tensor in [0, 1], got {lq.dtype} (for 8-bit pixels: lq.float() / 255)')
    weight = next(net.parameters())
    if lq.device != weight.device:
        raise ValueError(f'lq is on {lq.device}, the network on {weight.device}: move one of them (lq.to(...))')
    if lq.dtype != weight.dtype and not torch.is_autocast_enabled(lq.device.type):
        raise TypeError(f"lq is {lq.dtype}, the network's weights are {weight.dtype}: convert lq (lq.to("
                        f'{weight.dtype})) or the network, or run under torch.autocast')
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in size)):
        raise ValueError(f'size must be (H, W) with ints >= 1, got {size!r}')
    check_int_option('chunk_size', chunk_size, 1)
    check_int_option('tile', tile, 1)
    check_int_option('tile_overlap', tile_overlap, 0, optional=False)
