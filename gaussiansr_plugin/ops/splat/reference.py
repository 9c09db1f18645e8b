"""Pure-PyTorch reference of the splat op: the oracle for tests and the CPU path.

Memory: the queries are processed in chunks of ``chunk`` queries; one chunk materialises about
``chunk * (2r+1)^2 * (C + 8)`` values of the compute dtype (plus int64 indices), so a forward under
``torch.no_grad()`` needs O(chunk) extra memory whatever Q is. With autograd the per-chunk tensors are kept
for the backward pass, i.e. O(Q * (2r+1)^2 * (C + 8)).
"""
import torch
from torch import Tensor

DEFAULT_CHUNK = 65536


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
    return py, px, torch.floor(py + 0.5).long(), torch.floor(px + 0.5).long()


def _splat_chunk(feat_t, params_t, coords, h, w, radius):
    """Splat one chunk of queries. ``feat_t``: [B, N, C]; ``params_t``: [B, N, 4] (σy, σx, ρ, opacity)."""
    b, q = coords.shape[:2]
    py, px, cy, cx = query_centres(coords, h, w)
    offsets = torch.arange(-radius, radius + 1, device=coords.device)
    iy = cy[..., None, None] + offsets[:, None]  # [B, q, k, 1]
    ix = cx[..., None, None] + offsets[None, :]  # [B, q, 1, k]
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)  # [B, q, k, k]
    idx = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).reshape(b, -1)  # [B, q*k*k]
    params = torch.gather(params_t, 1, idx[..., None].expand(-1, -1, 4)).reshape(b, q, -1, 4)
    sy, sx, rho, opacity = params.unbind(-1)
    dy = (py[..., None, None] - iy.to(py.dtype)).expand(-1, -1, -1, ix.shape[-1]).reshape(b, q, -1)
    dx = (px[..., None, None] - ix.to(px.dtype)).expand(-1, -1, iy.shape[-2], -1).reshape(b, q, -1)
    ny, nx = dy / sy, dx / sx
    maha = (ny * ny - 2 * rho * ny * nx + nx * nx) / (1 - rho * rho)
    weight = opacity * torch.exp(-0.5 * maha) * valid.reshape(b, q, -1).to(opacity.dtype)  # [B, q, k*k]
    feats = torch.gather(feat_t, 1, idx[..., None].expand(-1, -1, feat_t.shape[-1])).reshape(b, q, -1, feat_t.shape[-1])
    return torch.einsum('bqk,bqkc->bqc', weight, feats)


def splat_reference(feat: Tensor,  # [B, C, h, w]
                    sigma: Tensor,  # [B, 2, h, w]
                    rho: Tensor,  # [B, 1, h, w]
                    opacity: Tensor,  # [B, 1, h, w]
                    coords: Tensor,  # [B, Q, 2]
                    radius: int = 3,
                    chunk: int = DEFAULT_CHUNK) -> Tensor:  # [B, Q, C]
    """Splat LR Gaussians at continuous query positions (see ``gaussiansr_plugin.ops.splat.splat``).

    Computed in the promoted dtype of the inputs (at least float32); returns that dtype.
    """
    dtype = torch.promote_types(torch.promote_types(feat.dtype, sigma.dtype), torch.float32)
    b, c, h, w = feat.shape
    feat_t = feat.to(dtype).flatten(2).transpose(1, 2)  # [B, N, C]
    params_t = torch.cat([sigma, rho, opacity], dim=1).to(dtype).flatten(2).transpose(1, 2)  # [B, N, 4]
    coords = coords.to(dtype)
    q = coords.shape[1]
    if q == 0:
        return feat_t.new_zeros(b, 0, c) + 0 * feat_t.sum() + 0 * params_t.sum()
    outs = [
        _splat_chunk(feat_t, params_t, coords[:, i:i + chunk], h, w, radius) for i in range(0, q, max(1, chunk))
    ]
    return torch.cat(outs, dim=1)
