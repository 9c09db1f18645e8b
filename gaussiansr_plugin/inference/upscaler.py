"""Whole-image upscaling: device choice, output size, and a CUDA out-of-memory fallback."""
import re
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

from basicsr.utils import get_root_logger
from ..archs.gaussian_util import output_size
from ..archs.gaussiansr_arch import MIN_CHUNK_SIZE, GaussianSR
from ..errors import UserError
from ..precision import DEFAULT_PRECISION, inference_precision
from .image_io import Picture
from .progress import ChunkProgress

FIRST_TILE = 256  # LR tile side tried first when tiling is switched on after out-of-memory errors
MIN_TILE = 32


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a usable ``torch.device``."""
    name = (name or 'auto').strip().lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cpu':
        return torch.device('cpu')
    if re.fullmatch(r'cuda(:\d+)?', name):
        if not torch.cuda.is_available():
            raise UserError(f'--device {name}: CUDA is not available here (no GPU, or a CPU-only torch); use cpu')
        index = int(name.split(':')[1]) if ':' in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f'--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible')
        return torch.device('cuda', index)
    raise UserError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N")


def keeps_aspect(lr_size: Tuple[int, int], size: Tuple[int, int]) -> bool:
    """Whether one scale maps ``lr_size`` (h, w) to ``size`` (H, W) within the rounding to whole pixels."""
    (h, w), (big_h, big_w) = lr_size, size
    return max((big_h - 0.5) / h, (big_w - 0.5) / w) <= min((big_h + 0.5) / h, (big_w + 0.5) / w)


def fit_inside(lr_size: Tuple[int, int], size: Tuple[int, int]) -> Tuple[int, int]:
    """The largest (H, W) of ``lr_size``'s aspect ratio that fits inside ``size`` (H, W)."""
    scale = min(size[0] / lr_size[0], size[1] / lr_size[1])
    return tuple(min(limit, n) for limit, n in zip(size, output_size(lr_size, scale)))


def target_size(lr_size: Tuple[int, int], scale: Optional[float], size: Optional[Tuple[int, int]],
                max_pixels: float, keep_aspect: bool = False) -> Tuple[int, int]:
    """The output (H, W): ``size`` if given (with ``keep_aspect``, the largest size of the input's aspect ratio
    inside it), else ``round(h*s) x round(w*s)``; at most ``max_pixels`` pixels."""
    if size:
        out = fit_inside(lr_size, size) if keep_aspect else tuple(size)
    else:
        out = output_size(lr_size, scale)
    if out[0] * out[1] > max_pixels:
        raise UserError(f'output would be {out[1]}x{out[0]} = {out[0] * out[1]:.3g} pixels, above --max-pixels '
                        f'{max_pixels:.3g}; use a smaller scale or size, or raise --max-pixels')
    return out


@dataclass(frozen=True)
class RenderPlan:
    """How ``GaussianSR.upsample`` is called: query chunk size, optional LR tiling and the precision
    (``gaussiansr_plugin.precision``)."""
    chunk_size: int
    tile: Optional[int] = None
    tile_overlap: int = 16
    precision: str = DEFAULT_PRECISION

    def smaller(self, lr_size: Tuple[int, int]) -> Optional['RenderPlan']:
        """The next plan after an out-of-memory error: half the chunk, then tiles, then half the tile; or None."""
        if self.chunk_size > MIN_CHUNK_SIZE:
            return replace(self, chunk_size=max(MIN_CHUNK_SIZE, self.chunk_size // 2))
        if self.tile is None and max(lr_size) > MIN_TILE:
            return replace(self, tile=min(FIRST_TILE, max(MIN_TILE, max(lr_size) // 2)))
        if self.tile is not None and self.tile > MIN_TILE:
            return replace(self, tile=max(MIN_TILE, self.tile // 2))
        return None


def _finite(out: Tensor) -> Tensor:
    """``out`` unless it holds NaN or inf (clamping would write them as black or white pixels without a word)."""
    if not bool(torch.isfinite(out).all()):
        raise UserError('the network produced non-finite values (NaN or inf): the model is broken (weights too large '
                        'or a diverged training); nothing was written')
    return out


def render(net: GaussianSR, lq: Tensor, size: Tuple[int, int], plan: RenderPlan,
           progress: Optional[ChunkProgress] = None) -> Tensor:
    """``net.upsample`` under no_grad; on CUDA out-of-memory, retry with ever smaller plans (logged as warnings).

    Args:
        net (GaussianSR): The network, in eval mode.
        lq (Tensor): LR images in [0, 1], [B, 3, h, w].
        size (tuple[int, int]): Output (H, W).
        plan (RenderPlan): The first plan tried.
        progress (ChunkProgress, optional): A bar that follows the chunks (restarted by each retry).

    Returns:
        Tensor: [B, 3, H, W], clamped to [0, 1]; on the CPU when tiling, so that the device only ever holds one tile.

    Raises:
        UserError: The output holds NaN or inf, or even the smallest plan runs out of GPU memory.
    """
    lr_size = tuple(lq.shape[-2:])
    while True:
        try:
            out = torch.empty(lq.shape[0], 3, *size) if plan.tile else None
            tracked = progress.track(net, lq, size, plan.chunk_size, plan.tile, plan.tile_overlap) if progress else None
            with torch.no_grad(), inference_precision(plan.precision, lq.device.type), tracked or nullcontext():
                return _finite(net.upsample(
                    lq, size, chunk_size=plan.chunk_size, tile=plan.tile, tile_overlap=plan.tile_overlap,
                    out=out)).clamp_(0, 1)
        except torch.cuda.OutOfMemoryError:
            failed = plan
        # outside the except block, so the failed attempt's tensors are released before the retry
        plan = failed.smaller(lr_size)
        if lq.is_cuda:
            torch.cuda.empty_cache()
        if plan is None:
            raise UserError(f'out of GPU memory even with --chunk-size {failed.chunk_size} and --tile {failed.tile}; '
                            'use --device cpu, or a smaller scale or size')
        get_root_logger().warning(f'CUDA out of memory with chunk size {failed.chunk_size}, tile {failed.tile}; '
                                  f'retrying with chunk size {plan.chunk_size}, tile {plan.tile}')


def rgb_to_tensor(rgb: np.ndarray, device: torch.device) -> Tensor:
    """An RGB image [h, w, 3] (float32 in [0, 1]) -> [1, 3, h, w] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)


def upscale_picture(net: GaussianSR, picture: Picture, size: Tuple[int, int], plan: RenderPlan,
                    device: torch.device, progress: Optional[ChunkProgress] = None) -> Picture:
    """Super-resolve a picture to ``size`` (H, W); alpha is resized separately (bicubic, OpenCV).

    Gray pictures go through the network as RGB and come back as the mean of the output channels. ``progress``
    follows the rendering's chunks.
    """
    out = render(net, rgb_to_tensor(picture.rgb, device), size, plan, progress)
    rgb = out[0].permute(1, 2, 0).float().cpu().numpy()
    alpha = None
    if picture.alpha is not None:
        alpha = cv2.resize(picture.alpha, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return Picture(rgb=rgb, alpha=alpha, gray=picture.gray, dtype=picture.dtype)
