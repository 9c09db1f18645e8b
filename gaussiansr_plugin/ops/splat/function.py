"""The splat CUDA kernels as torch.library operators with autograd: fused forward, deterministic gather backward
(no atomics).

Backward (``csrc/splat_kernel.cu``): the queries are sorted by centre pixel (stable sort), so the queries whose
window holds an LR pixel form 2r+1 contiguous ranges; one warp per LR pixel and channel slice gathers them. When
there are too few pixels to fill the GPU, the window rows are split into ``parts`` whose partial sums a last
kernel adds in a fixed order, so two backward runs give bitwise equal gradients.
"""
import functools
import math
from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ._backend import load_ext
from .reference import mark_invalid_gaussians

_WAVES = 2  # the backward splits the window until it has this many waves of resident warps ...
_MIN_QUERIES_PER_PART = 64  # ... while each part keeps this many queries per warp on average


@functools.lru_cache(maxsize=None)
def _resident_warps(device_index: int) -> int:
    """Warps the GPU keeps resident at once (multiprocessors x warps per multiprocessor)."""
    props = torch.cuda.get_device_properties(device_index)
    return props.multi_processor_count * getattr(props, 'max_threads_per_multi_processor', 2048) // 32


def backward_parts(batch: int, num_pixels: int, num_queries: int, slices: int, radius: int,
                   device: torch.device) -> int:
    """Number of parts the 2r+1 window rows of the backward are split into (1 when there is parallelism enough).

    Args:
        batch (int): B.
        num_pixels (int): N = h * w.
        num_queries (int): Q.
        slices (int): Channel slices per pixel (C / channels per thread, rounded up).
        radius (int): Window radius r.
        device (torch.device): The CUDA device.

    Returns:
        int: P in [1, 2r+1].
    """
    side = 2 * radius + 1
    warps = max(1, batch * num_pixels * slices)
    wanted = math.ceil(_WAVES * _resident_warps(device.index or 0) / warps)
    by_work = num_queries * side * side // (num_pixels * _MIN_QUERIES_PER_PART)
    return max(1, min(side, wanted, by_work))


def _dense(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """The operators' inputs as the kernels read them. An operator cannot rely on its caller for the layout: a
    program of torch.export or torch.compile may hand it strides other than the eager ones."""
    return tuple(t.contiguous() for t in tensors)


# The CUDA kernels as torch.library operators, so that torch.compile, CUDA-graph capture and export trace through
# them (shapes from the fake implementations) instead of breaking the graph at an opaque extension call: the
# forward with its autograd backward, and the forward's two halves for inference over many query chunks.


@torch.library.custom_op('gaussiansr::splat_forward', mutates_args=())
def splat_forward(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor, coords: Tensor,
                  radius: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Fused forward on float32 CUDA tensors: out [B, Q, C], and feat_t [B, N, C], params [B, N, 4] (conic and
    opacity of each pixel's Gaussian) kept for the backward."""
    out, feat_t, params = _ext().forward(*_dense(feat, sigma, rho, opacity, coords), radius)
    return out, feat_t, params


@splat_forward.register_fake
def _splat_forward_shapes(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor, coords: Tensor,
                          radius: int) -> Tuple[Tensor, Tensor, Tensor]:
    b, c, h, w = feat.shape
    return feat.new_empty(b, coords.shape[1], c), feat.new_empty(b, h * w, c), feat.new_empty(b, h * w, 4)


@torch.library.custom_op('gaussiansr::splat_backward', mutates_args=())
def splat_backward(grad_out: Tensor, coords: Tensor, feat_t: Tensor, params: Tensor, sigma: Tensor, rho: Tensor,
                   radius: int, parts: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Deterministic gather backward: gradients of feat [B, C, h, w], sigma [B, 2, h, w], rho and opacity
    [B, 1, h, w]."""
    grad_feat, grad_sigma, grad_rho, grad_opacity = _ext().backward(
        *_dense(grad_out, coords, feat_t, params, sigma, rho), radius, parts)
    return grad_feat, grad_sigma, grad_rho, grad_opacity


@splat_backward.register_fake
def _splat_backward_shapes(grad_out: Tensor, coords: Tensor, feat_t: Tensor, params: Tensor, sigma: Tensor,
                           rho: Tensor, radius: int, parts: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    b, _, c = grad_out.shape
    return grad_out.new_empty(b, c, *sigma.shape[-2:]), torch.empty_like(sigma), torch.empty_like(rho), \
        torch.empty_like(rho)


@torch.library.custom_op('gaussiansr::splat_prepare', mutates_args=())
def splat_prepare(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor) -> Tuple[Tensor, Tensor]:
    """The forward's first half on float32 CUDA tensors: feat_t [B, N, C] and params [B, N, 4], the maps as the
    kernels read them, for ``splat_query``. No autograd."""
    feat_t, params = _ext().prepare(*_dense(feat, sigma, rho, opacity))
    return feat_t, params


@splat_prepare.register_fake
def _splat_prepare_shapes(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor) -> Tuple[Tensor, Tensor]:
    b, c, h, w = feat.shape
    return feat.new_empty(b, h * w, c), feat.new_empty(b, h * w, 4)


@torch.library.custom_op('gaussiansr::splat_query', mutates_args=())
def splat_query(feat_t: Tensor, params: Tensor, coords: Tensor, h: int, w: int, radius: int) -> Tensor:
    """The forward's second half: out [B, Q, C] from ``splat_prepare``'s maps of an h x w image. No autograd."""
    return _ext().query(*_dense(feat_t, params, coords), h, w, radius)


@splat_query.register_fake
def _splat_query_shapes(feat_t: Tensor, params: Tensor, coords: Tensor, h: int, w: int, radius: int) -> Tensor:
    return feat_t.new_empty(feat_t.shape[0], coords.shape[1], feat_t.shape[2])


def _save_for_backward(ctx: FunctionCtx, inputs: Tuple, output: Tuple[Tensor, Tensor, Tensor]) -> None:
    _, sigma, rho, _, coords, radius = inputs
    _, feat_t, params = output
    ctx.save_for_backward(feat_t, params, sigma, rho, coords)
    ctx.radius = radius


def _backward(ctx: FunctionCtx, grad_out: Tensor, *_unused: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:
    feat_t, params, sigma, rho, coords = ctx.saved_tensors
    (batch, num_queries, channels), (h, w) = grad_out.shape, sigma.shape[-2:]
    slices = math.ceil(channels / _ext().channels_per_thread(channels))
    parts = backward_parts(batch, h * w, num_queries, slices, ctx.radius, grad_out.device)
    grads = splat_backward(grad_out.float(), coords, feat_t, params, sigma, rho, ctx.radius, parts)
    return (*grads, None, None)  # grads of feat, sigma, rho, opacity; none for coords and radius


splat_forward.register_autograd(_backward, setup_context=_save_for_backward)


def _ext() -> ModuleType:
    """The loaded extension (the dispatcher only calls in when it loaded)."""
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

    Gradients flow to feat, sigma, rho and opacity; coords get none. Inputs must already be validated. Invalid
    Gaussians get a NaN opacity first, as in the reference (``mark_invalid_gaussians``); a query with a non-finite
    coordinate has its centre clamped outside the image by the kernels, so it reads no pixel and returns 0.
    """
    return splat_forward(*_kernel_maps(feat, sigma, rho, opacity), _kernel_coords(coords), radius)[0]


def prepare_cuda(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor) -> Tuple[Tensor, Tensor]:
    """``splat_cuda``'s first half, without autograd: (feat_t, params) for any number of ``query_cuda`` calls."""
    return splat_prepare(*_kernel_maps(feat, sigma, rho, opacity))


def query_cuda(prepared: Tuple[Tensor, Tensor], coords: Tensor, size: Tuple[int, int], radius: int) -> Tensor:
    """``splat_cuda``'s second half: [B, Q, C] float32 from ``prepare_cuda``'s maps of an image of ``size``."""
    return splat_query(*prepared, _kernel_coords(coords), size[0], size[1], radius)


def _kernel_maps(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor) -> Tuple[Tensor, ...]:
    """The maps as the kernels take them: float32, invalid Gaussians marked."""
    return tuple(t.float() for t in (feat, *mark_invalid_gaussians(sigma, rho, opacity)))


def _kernel_coords(coords: Tensor) -> Tensor:
    return coords.detach().float()
