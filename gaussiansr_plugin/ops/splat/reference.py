"""Pure-PyTorch reference of the splat op: the oracle for tests and the CPU path.

Memory: the queries are processed in chunks of ``chunk_size`` queries; one chunk materialises about
``chunk_size * (2r+1)^2 * (C + 8)`` values of the compute dtype (plus int64 indices), so a forward under
``torch.no_grad()`` needs O(chunk_size) extra memory whatever Q is. With autograd the per-chunk tensors are kept
for the backward pass, i.e. O(Q * (2r+1)^2 * (C + 8)).
"""
import math
from typing import Tuple

import torch
from torch import Tensor

DEFAULT_CHUNK_SIZE = 65536


def mark_invalid_gaussians(sigma: Tensor, rho: Tensor, opacity: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(sigma, rho, opacity) with every invalid Gaussian (sigma <= 0, |rho| >= 1, anything non-finite) replaced by a
    unit circle of NaN opacity: both backends then give NaN at every query that reaches it, instead of each
    dividing by zero in its own way. Elementwise, so it needs no host sync and can be captured in a CUDA graph."""
    # comparisons with inf instead of isfinite, which dispatches four kernels per call (NaN fails every comparison)
    valid = ((sigma > 0) & (sigma < math.inf)).all(1, keepdim=True) & (rho.abs() < 1) & (opacity.abs() < math.inf)
    return torch.where(valid, sigma, 1.0), torch.where(valid, rho, 0.0), torch.where(valid, opacity, float('nan'))


def query_centres(coords: Tensor, h: int, w: int):
    """Continuous LR-pixel positions of the queries and their nearest LR pixels.

    Args:
        coords (Tensor): Query coordinates (y, x) in [-1, 1], [B, Q, 2].
        h (int): LR height.
        w (int): LR width.

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: py, px (float, [B, Q]) and cy, cx (int64, [B, Q]);
        ``c = floor(p + 1/2)`` so a query on a pixel border takes the pixel below/right.
    """
    py = (coords[..., 0] + 1) * (h / 2) - 0.5
    px = (coords[..., 1] + 1) * (w / 2) - 0.5
    # centres this far outside have no pixel within any radius <= MAX_RADIUS (7); the clamp keeps .long() defined
    cy = torch.floor(py + 0.5).clamp(-h - 8, 2 * h + 8).long()
    cx = torch.floor(px + 0.5).clamp(-w - 8, 2 * w + 8).long()
    return py, px, cy, cx


def _splat_chunk(feat_t, params_t, coords, h, w, radius):
    """Splat one chunk of queries. ``feat_t``: [B, N + 1, C] and ``params_t``: [B, N + 1, 4] (σy, σx, ρ, opacity),
    both ending with a blank Gaussian (zero feature, zero opacity) that stands for every window position outside the
    image and every query with a non-finite coordinate, so those read no pixel at all (as the CUDA kernel)."""
    b, q = coords.shape[:2]
    finite = torch.isfinite(coords).all(-1)  # [B, q]
    py, px, cy, cx = query_centres(torch.where(finite[..., None], coords, torch.zeros_like(coords)), h, w)
    offsets = torch.arange(-radius, radius + 1, device=coords.device)
    iy = cy[..., None, None] + offsets[:, None]  # [B, q, k, 1]
    ix = cx[..., None, None] + offsets[None, :]  # [B, q, 1, k]
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & finite[..., None, None]  # [B, q, k, k]
    idx = torch.where(valid, iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1), h * w).reshape(b, -1)  # [B, q*k*k]
    params = torch.gather(params_t, 1, idx[..., None].expand(-1, -1, 4)).reshape(b, q, -1, 4)
    sy, sx, rho, opacity = params.unbind(-1)
    dy = (py[..., None, None] - iy.to(py.dtype)).expand(-1, -1, -1, ix.shape[-1]).reshape(b, q, -1)
    dx = (px[..., None, None] - ix.to(px.dtype)).expand(-1, -1, iy.shape[-2], -1).reshape(b, q, -1)
    ny, nx = dy / sy, dx / sx
    maha = (ny * ny - 2 * rho * ny * nx + nx * nx) / (1 - rho * rho)
    weight = opacity * torch.exp(-0.5 * maha)  # [B, q, k*k]
    feats = torch.gather(feat_t, 1, idx[..., None].expand(-1, -1, feat_t.shape[-1])).reshape(b, q, -1, feat_t.shape[-1])
    return torch.einsum('bqk,bqkc->bqc', weight, feats)


def splat_reference(feat: Tensor,  # [B, C, h, w]
                    sigma: Tensor,  # [B, 2, h, w]
                    rho: Tensor,  # [B, 1, h, w]
                    opacity: Tensor,  # [B, 1, h, w]
                    coords: Tensor,  # [B, Q, 2]
                    radius: int = 3,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:  # [B, Q, C]
    """Splat LR Gaussians at continuous query positions (see ``gaussiansr_plugin.ops.splat.splat``, also for the
    behaviour on non-finite inputs).

    Computed in the promoted dtype of the inputs (at least float32); returns that dtype.
    """
    dtype = torch.promote_types(torch.promote_types(feat.dtype, sigma.dtype), torch.float32)
    sigma, rho, opacity = mark_invalid_gaussians(sigma, rho, opacity)
    b, c, h, w = feat.shape
    feat_t = feat.to(dtype).flatten(2).transpose(1, 2)  # [B, N, C]
    params_t = torch.cat([sigma, rho, opacity], dim=1).to(dtype).flatten(2).transpose(1, 2)  # [B, N, 4]
    blank = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=dtype, device=feat.device).expand(b, 1, 4)
    feat_t, params_t = torch.cat([feat_t, feat_t.new_zeros(b, 1, c)], 1), torch.cat([params_t, blank], 1)
    coords = coords.to(dtype)
    q = coords.shape[1]
    if q == 0:
        return feat_t.new_zeros(b, 0, c) + 0 * feat_t.sum() + 0 * params_t.sum()
    step = max(1, chunk_size)
    outs = [_splat_chunk(feat_t, params_t, coords[:, i:i + step], h, w, radius) for i in range(0, q, step)]
    return torch.cat(outs, dim=1)
