"""Autograd wrapper of the splat CUDA kernels: fused forward, deterministic gather backward (no atomics).

Backward: the queries are sorted by centre pixel (``torch.sort``, stable), so the queries whose window holds
an LR pixel are the contiguous ranges of the (2r+1)^2 centre buckets around it; one thread per LR pixel and
channel slice gathers them. For small maps the window is split into ``parts`` whose partial sums the
``finalize`` kernel adds in a fixed order, so two backward runs give bitwise equal gradients.
"""
import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ._backend import load_ext

_WAVES = 2  # the backward aims at this many waves of resident threads before splitting the window
_MIN_QUERIES_PER_PART = 8  # ... but keeps at least this many (average) queries per thread


@functools.lru_cache(maxsize=None)
def _resident_threads(device_index: int) -> int:
    """Threads the GPU keeps resident at once (multiprocessors x threads per multiprocessor)."""
    props = torch.cuda.get_device_properties(device_index)
    return props.multi_processor_count * getattr(props, 'max_threads_per_multi_processor', 2048)


def backward_parts(batch: int, num_pixels: int, num_queries: int, slices: int, radius: int,
                   device: torch.device) -> int:
    """Number of parts the (2r+1)^2 window of the backward is split into (1 when there is parallelism enough).

    Args:
        batch (int): B.
        num_pixels (int): N = h * w.
        num_queries (int): Q.
        slices (int): Channel slices per pixel (C / channels per thread, rounded up).
        radius (int): Window radius r.
        device (torch.device): The CUDA device.

    Returns:
        int: P in [1, (2r+1)^2].
    """
    window = (2 * radius + 1)**2
    threads = max(1, batch * num_pixels * slices)
    wanted = math.ceil(_WAVES * _resident_threads(device.index or 0) / threads)
    by_work = num_queries * window // (num_pixels * _MIN_QUERIES_PER_PART)
    return max(1, min(window, wanted, by_work))


class SplatFunction(torch.autograd.Function):
    """``splat`` on CUDA float32 tensors; use ``splat_cuda`` (it converts and checks) rather than ``apply``."""

    @staticmethod
    def forward(
            ctx: FunctionCtx,
            feat: Tensor,  # [B, C, h, w]
            sigma: Tensor,  # [B, 2, h, w]
            rho: Tensor,  # [B, 1, h, w]
            opacity: Tensor,  # [B, 1, h, w]
            coords: Tensor,  # [B, Q, 2]
            radius: int) -> Tensor:  # [B, Q, C]
        ext = _ext()
        h, w = feat.shape[-2:]
        feat_t, params = ext.prepare(feat, sigma, rho, opacity)  # [B, N, C], [B, N, 4]
        ctx.save_for_backward(feat_t, params, sigma, rho, coords)
        ctx.radius = radius
        return ext.forward(feat_t, params, coords, h, w, radius)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:  # grad_out: [B, Q, C]
        ext = _ext()
        feat_t, params, sigma, rho, coords = ctx.saved_tensors
        radius = ctx.radius
        (batch, num_queries, channels), (h, w) = grad_out.shape, sigma.shape[-2:]
        keys = ext.bucket_keys(coords, h, w, radius)  # [B * Q] int32
        sorted_keys, order = torch.sort(keys, stable=True)
        num_buckets = batch * (h + 2 * radius + 2) * (w + 2 * radius + 2)
        bounds = torch.arange(num_buckets + 1, device=keys.device, dtype=keys.dtype)
        offsets = torch.searchsorted(sorted_keys, bounds, out_int32=True)  # [num_buckets + 1]
        grad_sorted = grad_out.float().reshape(-1, channels).index_select(0, order)  # [B * Q, C]
        coords_sorted = coords.reshape(-1, 2).index_select(0, order)  # [B * Q, 2]
        slices = math.ceil(channels / ext.channels_per_thread(channels))
        parts = backward_parts(batch, h * w, num_queries, slices, radius, grad_out.device)
        grad_feat_part, grad_params_part = ext.backward(grad_sorted, coords_sorted, offsets, feat_t, params, h, w,
                                                        radius, parts)
        grad_feat, grad_sigma, grad_rho, grad_opacity = ext.finalize(grad_feat_part, grad_params_part, sigma, rho)
        return grad_feat, grad_sigma, grad_rho, grad_opacity, None, None  # no grads for coords, radius


def _ext():
    ext, error = load_ext()
    if ext is None:
        raise RuntimeError('the splat CUDA extension is unavailable') from error
    return ext


def splat_cuda(
        feat: Tensor,  # [B, C, h, w]
        sigma: Tensor,  # [B, 2, h, w]
        rho: Tensor,  # [B, 1, h, w]
        opacity: Tensor,  # [B, 1, h, w]
        coords: Tensor,  # [B, Q, 2]
        radius: int) -> Tensor:  # [B, Q, C]
    """Splat with the CUDA kernels, computed in float32 (inputs of any float dtype); returns float32.

    Gradients flow to feat, sigma, rho and opacity; coords get none. Inputs must already be validated.
    """
    args = (t.float().contiguous() for t in (feat, sigma, rho, opacity))
    return SplatFunction.apply(*args, coords.detach().float().contiguous(), radius)
