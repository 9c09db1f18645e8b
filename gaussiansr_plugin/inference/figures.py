"""Figures of a GaussianSR model, drawn with matplotlib's Agg canvas (no display, no pyplot state).

- ``bank_figure``: the learned Gaussian bank as ellipses (1-sigma filled, 2-sigma outlined, transparency from the
  opacity), coloured by how often each kernel is chosen;
- ``choice_figure``: an LR image, its per-pixel kernel index (argmax of the bank logits) and the chosen sigma;
- ``compare_figure``: LR (nearest) / bicubic / GaussianSR at several scales, with zoomed crops.
"""
import colorsys
import io
import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, PowerNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle
from torch import Tensor

from ..archs.gaussiansr_arch import GaussianSR

DPI = 150
UNUSED = '0.8'  # colour of kernels no pixel chose


def kernel_choice(net: GaussianSR, lq: Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """Per-pixel kernel index and chosen sigma of one LR image.

    Args:
        net (GaussianSR): The network (eval mode, with a Gaussian bank).
        lq (Tensor): LR image in [0, 1], [1, 3, h, w].

    Returns:
        tuple: kernel index (argmax of ``kernel_logits``), [h, w] int64; mean of (sigma_y, sigma_x) of the
        per-pixel Gaussian in LR pixels, [h, w] float32.
    """
    with torch.no_grad():
        feat = net.encode(lq)
        index = net.kernel_logits(feat).argmax(dim=1)[0]
        kernels = net.gaussians(feat)[0]
    return index.cpu().numpy(), kernels[:2].mean(dim=0).float().cpu().numpy()


def ellipse_axes(sigma_y: float, sigma_x: float, rho: float) -> Tuple[float, float, float]:
    """Semi-axes (major, minor) of the 1-sigma contour and the major axis angle in degrees from +x towards +y.

    The covariance in (x, y) order is ``[[sx^2, rho sx sy], [rho sx sy, sy^2]]`` (the splat op's, transposed).
    """
    cov = np.array([[sigma_x**2, rho * sigma_x * sigma_y], [rho * sigma_x * sigma_y, sigma_y**2]])
    values, vectors = np.linalg.eigh(cov)  # ascending
    major = vectors[:, 1]
    return math.sqrt(values[1]), math.sqrt(max(values[0], 0.0)), math.degrees(math.atan2(major[1], major[0]))


def categorical_cmap(k: int) -> ListedColormap:
    """``k`` distinguishable colours: tab20 up to 20, else golden-ratio hues with alternating lightness."""
    if k <= 20:
        return ListedColormap(colormaps['tab20'](np.arange(k)))
    colours = [
        colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.55 + 0.4 * (i % 2), 0.95 - 0.3 * (i // 2 % 2)) for i in range(k)
    ]
    return ListedColormap(colours)


def bank_figure(bank: np.ndarray, usage: np.ndarray) -> Figure:
    """The Gaussian bank as a grid of ellipses in LR-pixel units, coloured by usage (gray: never chosen).

    Args:
        bank (np.ndarray): Constrained kernels (sigma_y, sigma_x, rho, opacity), [K, 4].
        usage (np.ndarray): How many LR pixels chose each kernel, [K].

    Returns:
        Figure: The figure.
    """
    k = bank.shape[0]
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    axes = [ellipse_axes(*map(float, bank[i, :3])) for i in range(k)]
    step = 2 * 2 * max(a[0] for a in axes) * 1.1  # the widest 2-sigma contour fits its cell
    share = 100 * usage / max(1, usage.sum())
    norm, cmap = PowerNorm(0.5, 0, max(share.max(), 1e-6)), colormaps['viridis']  # rare kernels stay visible
    fig = Figure(figsize=(1.0 + 0.75 * cols, 0.5 + 0.75 * rows), dpi=DPI, layout='constrained')
    ax = fig.add_subplot()
    for i, (major, minor, angle) in enumerate(axes):
        centre = ((i % cols + 0.5) * step, (i // cols + 0.5) * step)
        colour, opacity = (cmap(norm(share[i])) if usage[i] else UNUSED), float(bank[i, 3])
        ax.add_patch(
            Ellipse(
                centre,
                2 * major,
                2 * minor,
                angle=angle,
                facecolor=colour,
                edgecolor=colour,
                alpha=0.15 + 0.85 * opacity))
        ax.add_patch(
            Ellipse(
                centre,
                4 * major,
                4 * minor,
                angle=angle,
                fill=False,
                edgecolor=colour,
                linestyle='--',
                linewidth=0.8,
                alpha=0.15 + 0.85 * opacity))
        ax.text(centre[0] - 0.47 * step, centre[1] - 0.47 * step, str(i), fontsize=5, va='top', color='0.4')
    ax.plot([0.1 * step, 0.1 * step + 1], [rows * step + 0.15 * step] * 2, color='k', linewidth=1.5)
    ax.text(0.1 * step + 1.2, rows * step + 0.15 * step, '1 LR pixel', fontsize=6, va='center')
    ax.set_xlim(0, cols * step)
    ax.set_ylim(rows * step + 0.3 * step, 0)  # y down, as in the image
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title(
        f'Gaussian bank, K={k} ({int((usage > 0).sum())} chosen; gray: never)\n'
        '1-sigma filled, 2-sigma dashed; fainter = lower opacity',
        fontsize=8)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.6, label='LR pixels choosing the kernel (%)')
    return fig


def choice_figure(lr: np.ndarray, index: np.ndarray, sigma: np.ndarray, k: int) -> Figure:
    """LR image, per-pixel kernel index (categorical colours) and chosen sigma, side by side.

    Args:
        lr (np.ndarray): LR image, [h, w, 3] RGB in [0, 1].
        index (np.ndarray): Kernel index per LR pixel, [h, w].
        sigma (np.ndarray): Chosen sigma (mean of sigma_y, sigma_x) per LR pixel, [h, w].
        k (int): Bank size K.

    Returns:
        Figure: The figure.
    """
    h, w = index.shape
    fig = Figure(figsize=(3 * 3.6, 3.6 * h / w + 0.5), dpi=DPI, layout='constrained')
    ax_lr, ax_index, ax_sigma = fig.subplots(1, 3)
    ax_lr.imshow(lr, interpolation='nearest')
    ax_lr.set_title(f'LR image ({w}x{h})', fontsize=9)
    cmap, norm = categorical_cmap(k), BoundaryNorm(np.arange(k + 1) - 0.5, k)
    shown = ax_index.imshow(index, cmap=cmap, norm=norm, interpolation='nearest')
    used = len(np.unique(index))
    ax_index.set_title(f'kernel index per LR pixel ({used} of {k} kernels used)', fontsize=9)
    fig.colorbar(shown, ax=ax_index, shrink=0.8, label='kernel index', ticks=np.linspace(0, k - 1, min(k, 6)).round())
    shown = ax_sigma.imshow(sigma, cmap='magma', interpolation='nearest')
    ax_sigma.set_title('chosen sigma, mean of (sigma_y, sigma_x)', fontsize=9)
    fig.colorbar(shown, ax=ax_sigma, shrink=0.8, label='LR pixels')
    for ax in (ax_lr, ax_index, ax_sigma):
        ax.axis('off')
    return fig


@dataclass
class Comparison:
    """One scale of ``compare_figure``: the three upscaled images, each [H, W, 3] RGB in [0, 1]."""
    scale: float
    nearest: np.ndarray
    bicubic: np.ndarray
    ours: np.ndarray


def crop_box(lr_size: Tuple[int, int], fraction: float = 0.3) -> Tuple[int, int, int, int]:
    """A centred square LR window (y0, y1, x0, x1) whose side is ``fraction`` of the shorter LR side."""
    h, w = lr_size
    side = max(2, int(round(min(h, w) * fraction)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return y0, y0 + side, x0, x0 + side


def compare_figure(lr_size: Tuple[int, int], rows: Sequence[Comparison]) -> Figure:
    """Per scale: our full result with the crop marked, then the crop of LR (nearest), bicubic and ours."""
    y0, y1, x0, x1 = crop_box(lr_size)
    fig = Figure(figsize=(4 * 3.0, len(rows) * 3.0 * 1.02 + 0.4), dpi=DPI, layout='constrained')
    grid = fig.subplots(len(rows), 4, squeeze=False)
    titles = ['GaussianSR (full)', 'LR, nearest (crop)', 'bicubic (crop)', 'GaussianSR (crop)']
    for r, row in enumerate(rows):
        big_h, big_w = row.ours.shape[:2]
        fy, fx = big_h / lr_size[0], big_w / lr_size[1]
        hy0, hy1, hx0, hx1 = (int(round(y0 * fy)), int(round(y1 * fy)), int(round(x0 * fx)), int(round(x1 * fx)))
        panels: List[np.ndarray] = [row.ours] + [img[hy0:hy1, hx0:hx1] for img in (row.nearest, row.bicubic, row.ours)]
        for c, (ax, img) in enumerate(zip(grid[r], panels)):
            ax.imshow(np.clip(img, 0, 1), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        grid[r][0].add_patch(
            Rectangle((hx0 - 0.5, hy0 - 0.5), hx1 - hx0, hy1 - hy0, fill=False, edgecolor='red', linewidth=1.2))
        grid[r][0].set_ylabel(f'x{row.scale:g}  ({big_w}x{big_h})', fontsize=9)
    return fig


def figure_png(fig: Figure) -> bytes:
    """A figure encoded as PNG (Agg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=DPI)
    return buffer.getvalue()
