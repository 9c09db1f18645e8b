"""Gaussian bank and Selective Gaussian Splatting (SGS): every LR pixel picks one kernel from a learnable bank.

Training draws the choice with Gumbel-softmax (per pixel; no averaging over the batch or space); evaluation
takes the argmax of the logits, so inference is deterministic.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


RHO_MAX = 0.99  # |rho| < 1 keeps every covariance positive definite
_EPS = 1e-6


def constrain(raw: Tensor, sigma_range: Tuple[float, float]) -> Tensor:
    """Unconstrained kernel parameters -> (sigma_y, sigma_x, rho, opacity) along dim 1 ([K, 4] or [B, 4, h, w]):
    sigma = lo + (hi - lo) * sigmoid(.), rho = RHO_MAX * tanh(.), opacity = sigmoid(.)."""
    lo, hi = sigma_range
    sigma = lo + (hi - lo) * torch.sigmoid(raw[:, :2])
    rho = RHO_MAX * torch.tanh(raw[:, 2:3])
    opacity = torch.sigmoid(raw[:, 3:4])
    return torch.cat([sigma, rho, opacity], dim=1)


def unconstrain(kernels: Tensor, sigma_range: Tuple[float, float]) -> Tensor:
    """The inverse of ``constrain`` (values at the bounds are moved inside them by 1e-6 first)."""
    lo, hi = sigma_range
    sigma = torch.logit(((kernels[:, :2] - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS))
    rho = torch.atanh((kernels[:, 2:3] / RHO_MAX).clamp(-1 + _EPS, 1 - _EPS))
    opacity = torch.logit(kernels[:, 3:4].clamp(_EPS, 1 - _EPS))
    return torch.cat([sigma, rho, opacity], dim=1)


class GaussianBank(nn.Module):
    """K learnable 2D Gaussian kernels theta_k = (sigma_y, sigma_x, rho, opacity), stored unconstrained.

    Constraints: ``constrain``.
    Initialisation: (sigma_y, sigma_x) on a grid over ``sigma_range``, rho = 0, opacity = 0.95.

    Args:
        bank_size (int): K. Default: 100.
        sigma_range (tuple[float, float]): Range of sigma in LR pixels. Default: (0.3, 1.5).
    """

    def __init__(self, bank_size: int = 100, sigma_range: Tuple[float, float] = (0.3, 1.5)):
        super().__init__()
        lo, hi = float(sigma_range[0]), float(sigma_range[1])
        if not 0 < lo < hi:
            raise ValueError(f'sigma_range must satisfy 0 < low < high, got {sigma_range}')
        self.sigma_low, self.sigma_high = lo, hi
        n = math.ceil(math.sqrt(bank_size))
        u = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        grid = torch.stack(torch.meshgrid(u, u, indexing='ij'), dim=-1).reshape(-1, 2)[:bank_size]
        raw = torch.zeros(bank_size, 4)
        raw[:, :2] = torch.logit(grid)
        raw[:, 3] = math.log(0.95 / 0.05)
        self.raw = nn.Parameter(raw)  # [K, 4]

    def forward(self) -> Tensor:
        """Constrained kernels, [K, 4]: sigma_y, sigma_x, rho, opacity."""
        return constrain(self.raw, (self.sigma_low, self.sigma_high))


class GaussianHead(nn.Module):
    """Predicts the bank logits of every LR pixel, [B, C, h, w] -> [B, K, h, w], and, with ``refine``, a per-pixel
    offset of the chosen kernel's unconstrained parameters, [B, 4, h, w] (zero at initialisation).

    Args:
        in_ch (int): Input channels. Default: 64.
        bank_size (int): K. Default: 100.
        hidden (int): Hidden channels. Default: 64.
        refine (bool): Also predict the per-pixel refinement. Default: False.
    """

    def __init__(self, in_ch: int = 64, bank_size: int = 100, hidden: int = 64, refine: bool = False):
        super().__init__()
        self.bank_size = bank_size
        self.body = nn.Sequential(nn.Conv2d(in_ch, hidden, 3, 1, 1), nn.GELU(),
                                  nn.Conv2d(hidden, bank_size + (4 if refine else 0), 1))
        if refine:  # start from the bank's kernels: the refinement rows of the last conv begin at zero
            nn.init.zeros_(self.body[-1].weight[bank_size:])
            nn.init.zeros_(self.body[-1].bias[bank_size:])

    def forward(self, feat: Tensor) -> Tensor:
        return self.body(feat)


def refine_kernels(kernels: Tensor, offset: Tensor, sigma_range: Tuple[float, float]) -> Tensor:
    """Per-pixel kernels moved by ``offset`` in the bank's unconstrained space, so a refined kernel stays valid:
    [B, 4, h, w] + [B, 4, h, w] -> [B, 4, h, w]."""
    return constrain(unconstrain(kernels, sigma_range) + offset, sigma_range)


def select_kernels(logits: Tensor, bank: Tensor, training: bool, tau: float = 1.0, hard: bool = True,
                   eval_selection: str = 'argmax') -> Tensor:
    """Per-pixel kernel parameters sum_k p_k theta_k.

    Args:
        logits (Tensor): Bank logits, [B, K, h, w].
        bank (Tensor): Constrained kernels, [K, 4].
        training (bool): Gumbel-softmax sampling if True, else deterministic selection.
        tau (float): Gumbel-softmax temperature. Default: 1.
        hard (bool): Straight-through one-hot samples in training. Default: True.
        eval_selection (str): ``argmax`` (one kernel per pixel) or ``soft`` (softmax(logits / tau) mixture).

    Returns:
        Tensor: [B, 4, h, w] (sigma_y, sigma_x, rho, opacity).
    """
    if training:
        probs = F.gumbel_softmax(logits.float(), tau=tau, hard=hard, dim=1)
    elif eval_selection == 'soft':
        probs = torch.softmax(logits.float() / tau, dim=1)
    elif eval_selection == 'argmax':
        return bank[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    else:
        raise ValueError(f"eval_selection must be 'argmax' or 'soft', got {eval_selection!r}")
    return torch.einsum('bkhw,kd->bdhw', probs, bank.float())


def balance_loss(logits: Tensor) -> Tensor:
    """Load-balancing term of the per-pixel selection, as Switch Transformer's auxiliary loss (Fedus et al., 2021):
    K * sum_k f_k P_k, with P_k the mean softmax probability of kernel k over every LR pixel of the batch and f_k the
    share of those pixels whose argmax is k. 1 when the pixels spread evenly over the bank, K when every pixel picks
    the same kernel with certainty. f is a count (no gradient): the gradient flows through P and lowers the
    probabilities of the kernels chosen more often than the others.

    Args:
        logits (Tensor): Bank logits, [B, K, h, w].

    Returns:
        Tensor: Scalar, float32.
    """
    k = logits.shape[1]
    mean_prob = torch.softmax(logits.float(), dim=1).mean(dim=(0, 2, 3))  # P, [K]
    # f counts the argmax of the logits, the kernel inference takes (and bank_stats.py counts), not the Gumbel draw;
    # compared against every k rather than bincount'ed: exact, deterministic and without a host sync on CUDA
    choice = logits.argmax(dim=1).flatten()
    share = (choice[:, None] == torch.arange(k, device=logits.device)).sum(dim=0) / choice.numel()  # f, [K]
    return k * (share * mean_prob).sum()


def density_factor(sigma: Tensor, rho: Tensor) -> Tensor:
    """Normalisation 1 / (2 pi sqrt|Sigma|) of a bivariate normal, [B, 1, h, w]."""
    det_sqrt = sigma[:, 0:1] * sigma[:, 1:2] * torch.sqrt(1 - rho * rho)
    return 1.0 / (2 * math.pi * det_sqrt)
