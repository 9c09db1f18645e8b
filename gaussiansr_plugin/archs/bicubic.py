"""Bicubic sampling of feature maps at continuous positions, as ``F.grid_sample(mode='bicubic',
padding_mode='border', align_corners=False)`` computes it, for scattered queries and for regular grids."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

_CUBIC_A = -0.75  # grid_sample's (and OpenCV's) cubic convolution constant


def sample_bicubic(x: Tensor, coord: Tensor) -> Tensor:
    """Bicubic sample of ``x`` [B, C, h, w] at ``coord`` [B, Q, 2] ((y, x) in [-1, 1]) -> [B, Q, C], in float32
    (grid_sample is both slower and less accurate in bf16)."""
    grid = coord.flip(-1).unsqueeze(1).float()  # grid_sample wants (x, y)
    out = F.grid_sample(x.float(), grid, mode='bicubic', padding_mode='border', align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def bicubic_taps(coord: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """grid_sample's four bicubic taps along one axis of length ``size`` for the coordinates ``coord`` [N] in
    [-1, 1]: border-clamped indices [N, 4] (int64) and their weights [N, 4] (float32)."""
    pos = ((coord.float() + 1) * size - 1) / 2
    base = torch.floor(pos)
    t = (pos - base).unsqueeze(1)
    near = torch.cat([t, 1 - t], dim=1)  # distances to the two inner taps
    far = near + 1  # and to the two outer ones
    a = _CUBIC_A
    inner = ((a + 2) * near - (a + 3)) * near * near + 1
    outer = ((a * far - 5 * a) * far + 8 * a) * far - 4 * a
    weights = torch.stack([outer[:, 0], inner[:, 0], inner[:, 1], outer[:, 1]], dim=1)
    offsets = torch.arange(-1, 3, device=coord.device)
    index = (base.long().unsqueeze(1) + offsets).clamp_(0, size - 1)
    return index, weights


def rows_first(x: Tensor) -> Tensor:
    """[B, C, h, w] maps -> [h, B, w, C] float32, the layout ``sample_bicubic_grid`` gathers from (whole rows, then
    whole columns, each a contiguous run of channels)."""
    return x.permute(2, 0, 3, 1).float().contiguous()


def sample_bicubic_grid(maps: Tensor, rows: Tuple[Tensor, Tensor], cols: Tuple[Tensor, Tensor]) -> Tensor:
    """``sample_bicubic`` at every point of a regular grid, as two 1D passes (a grid's bicubic weights factor into a
    row part and a column part), -> [B, R * K, C] in row-major order, float32.

    Args:
        maps (Tensor): ``rows_first`` of the [B, C, h, w] maps, [h, B, w, C].
        rows (tuple[Tensor, Tensor]): ``bicubic_taps`` of the grid's R row coordinates over h.
        cols (tuple[Tensor, Tensor]): ``bicubic_taps`` of the grid's K column coordinates over w.

    Equals grid_sample up to float32 rounding (the taps are summed in another order).
    """
    (row_index, row_weights), (col_index, col_weights) = rows, cols
    by_rows = maps.index_select(0, row_index[:, 0]).mul_(row_weights[:, 0, None, None, None])
    for tap in range(1, 4):
        by_rows.add_(maps.index_select(0, row_index[:, tap]).mul_(row_weights[:, tap, None, None, None]))
    sampled = by_rows.index_select(2, col_index[:, 0]).mul_(col_weights[:, 0, None])  # [R, B, K, C]
    for tap in range(1, 4):
        sampled.add_(by_rows.index_select(2, col_index[:, tap]).mul_(col_weights[:, tap, None]))
    num_rows, b, num_cols, c = sampled.shape
    return sampled.transpose(0, 1).reshape(b, num_rows * num_cols, c)
