"""Continuous 2D Gaussian splatting: ``splat(feat, sigma, rho, opacity, coords, radius)``."""
from torch import Tensor

from .reference import splat_reference

__all__ = ['splat', 'splat_reference']


def splat(feat: Tensor,  # [B, C, h, w]
          sigma: Tensor,  # [B, 2, h, w]
          rho: Tensor,  # [B, 1, h, w]
          opacity: Tensor,  # [B, 1, h, w]
          coords: Tensor,  # [B, Q, 2]
          radius: int = 3) -> Tensor:  # [B, Q, C]
    """Sum the Gaussians of the (2r+1)^2 LR pixels nearest to each query, weighted by their density there.

    ``out[b, q] = sum_{(i, j) in N(q)} opacity_ij * exp(-d^T Sigma_ij^-1 d / 2) * feat[b, :, i, j]``.
    """
    return splat_reference(feat, sigma, rho, opacity, coords, radius)
