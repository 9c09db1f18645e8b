"""Bicubic samples of a feature map at continuous query positions: the decoder's bicubic stream.

``grid_sample(mode='bicubic')`` computes it in one kernel, but its backward adds every query's 16 taps x C channels
into the input's gradient one atomic at a time, channel by channel (the slowest kernel of a training step on an
H200: 0.67 ms of a bf16 step of 48² LR, batch 16, 2304 queries, profile of 2026-12-01). ``bicubic_taps`` computes
the same taps and weights (PyTorch's cubic convolution, A = -0.75, border padding, ``align_corners=False``) so that
training can gather the 16 rows of C channels per query and, backwards, add them back a whole row at a time.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from .gaussian_util import pair_tensor

_A = -0.75  # the cubic convolution's parameter, as PyTorch's grid_sample and interpolate use it


def sample_bicubic(x: Tensor, coord: Tensor) -> Tensor:
    """Bicubic sample of ``x`` [B, C, h, w] at ``coord`` [B, Q, 2] ((y, x) in [-1, 1]) -> [B, Q, C], in float32
    (grid_sample is both slower and less accurate in bf16). Under autograd on a GPU, the gathered form
    (``GatheredBicubic``), whose backward adds rows instead of single channels; else grid_sample, which also
    differentiates the positions when they ask for it."""
    if x.is_cuda and x.requires_grad and not coord.requires_grad and torch.is_grad_enabled():
        return GatheredBicubic.apply(x, coord)
    return grid_sample_bicubic(x, coord)


def grid_sample_bicubic(x: Tensor, coord: Tensor) -> Tensor:
    """``sample_bicubic`` by ``grid_sample`` alone, whatever the device and autograd."""
    grid = coord.flip(-1).unsqueeze(1).float()  # grid_sample wants (x, y)
    out = F.grid_sample(x.float(), grid, mode='bicubic', padding_mode='border', align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def _cubic_weights(t: Tensor) -> Tensor:
    """The 4 weights of taps -1, 0, 1, 2 at fractional offset ``t`` [...] -> [..., 4]."""
    near = torch.stack([t, 1 - t], dim=-1)  # distances to taps 0 and 1
    far = near + 1  # distances to taps -1 and 2
    w_near = ((_A + 2) * near - (_A + 3)) * near * near + 1
    w_far = ((_A * far - 5 * _A) * far + 8 * _A) * far - 4 * _A
    return torch.stack([w_far[..., 0], w_near[..., 0], w_near[..., 1], w_far[..., 1]], dim=-1)


def bicubic_taps(coord: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor]:
    """The 16 pixels and weights of each query's bicubic sample of an h x w map.

    Args:
        coord (Tensor): [B, Q, 2], (y, x) in [-1, 1] (pixel centres at ``align_corners=False``).
        h (int): Map height.
        w (int): Map width.

    Returns:
        tuple[Tensor, Tensor]: pixel indices y * w + x (int64) and weights (float32), both [B, Q, 16]; taps outside
        the map are clamped to its border, as grid_sample's border padding reads them.
    """
    # made on the device: a host tensor copied in would wait for the GPU and cannot be captured in a CUDA graph
    half_size = pair_tensor(h / 2, w / 2, coord.device)
    pos = (coord.float() + 1) * half_size - 0.5  # continuous pixel position, [B, Q, 2]
    base = torch.floor(pos)
    weights = _cubic_weights(pos - base)  # [B, Q, 2, 4]
    taps = base.long().unsqueeze(-1) + torch.arange(-1, 3, device=coord.device)  # taps -1..2 per axis, [B, Q, 2, 4]
    ys, xs = taps[..., 0, :].clamp(0, h - 1), taps[..., 1, :].clamp(0, w - 1)
    index = (ys.unsqueeze(-1) * w + xs.unsqueeze(-2)).flatten(-2)
    return index, (weights[..., 0, :].unsqueeze(-1) * weights[..., 1, :].unsqueeze(-2)).flatten(-2)


class GatheredBicubic(torch.autograd.Function):
    """``sample_bicubic`` as a gather of each query's 16 rows of the map (channels last) and their weighted sum in
    float32; the backward adds each query's weighted gradient row into its 16 pixels (``index_add_``). Gradients
    flow to the map only (the positions are data)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, coord: Tensor) -> Tensor:
        b, c, h, w = x.shape
        index, weights = bicubic_taps(coord, h, w)
        rows = (index + torch.arange(b, device=x.device).view(b, 1, 1) * (h * w)).flatten()  # into [B * h * w, C]
        table = x.float().permute(0, 2, 3, 1).reshape(b * h * w, c)
        ctx.save_for_backward(rows, weights)
        ctx.shape, ctx.dtype = x.shape, x.dtype
        taps = table.index_select(0, rows).view(-1, 16, c)
        # elementwise, not bmm: a matmul may run in TF32 (or bf16 under autocast); grid_sample sums in float32
        return (taps * weights.view(-1, 16, 1)).sum(1).view(b, -1, c)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> Tuple[Tensor, None]:
        rows, weights = ctx.saved_tensors
        b, c, h, w = ctx.shape
        grad_rows = weights.view(-1, 16, 1) * grad_out.float().reshape(-1, 1, c)  # [B * Q, 16, C]
        grad_table = grad_out.new_zeros(b * h * w, c, dtype=torch.float32).index_add_(0, rows, grad_rows.view(-1, c))
        return grad_table.view(b, h, w, c).permute(0, 3, 1, 2).to(ctx.dtype), None
