"""Continuous 2D Gaussian splatting: ``splat(feat, sigma, rho, opacity, coords, radius)``, and ``SplatSource`` for
many query chunks of one image.

Two implementations behind one autograd-aware function: the CUDA kernels (``function.py``, built on first use,
registered as the torch.library operators ``gaussiansr::splat_forward`` / ``splat_backward`` so that torch.compile
and export trace through them) and the pure-PyTorch reference (``reference.py``). The backend is the ``backend``
argument, else the environment variable ``GAUSSIANSR_SPLAT``, else ``auto``:

- ``auto``: the CUDA kernels for CUDA tensors (float16/bfloat16/float32) when the extension loads, else the
  reference (one warning per process when a CUDA input falls back). float64 inputs use the reference.
- ``cuda``: always the kernels; raises ``RuntimeError`` (chained to the load error) when they are unavailable.
- ``reference``: always the reference.
"""
import functools
import numbers
import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._backend import load_ext
from .function import prepare_cuda, query_cuda, splat_cuda
from .reference import splat_reference

__all__ = ['splat', 'SplatSource', 'splat_reference', 'BACKENDS', 'MAX_RADIUS']

BACKENDS = ('auto', 'cuda', 'reference')
MAX_RADIUS = 7
ENV_BACKEND = 'GAUSSIANSR_SPLAT'


def splat(
        feat: Tensor,  # [B, C, h, w]
        sigma: Tensor,  # [B, 2, h, w]
        rho: Tensor,  # [B, 1, h, w]
        opacity: Tensor,  # [B, 1, h, w]
        coords: Tensor,  # [B, Q, 2]
        radius: int = 3,
        *,
        backend: Optional[str] = None) -> Tensor:  # [B, Q, C]
    """Sum the Gaussians of the (2r+1)^2 LR pixels nearest to each query, weighted by their density there.

    ``out[b, q] = sum_{(i, j) in N(q)} opacity_ij * exp(-d^T Sigma_ij^-1 d / 2) * feat[b, :, i, j]`` with
    ``p_q = ((y + 1) h / 2 - 1/2, (x + 1) w / 2 - 1/2)``, ``d = p_q - (i, j)``,
    ``Sigma = [[sy^2, rho sy sx], [rho sy sx, sx^2]]`` and N(q) the pixels of the image within ``radius`` (Chebyshev)
    of ``floor(p_q + 1/2)`` (a query on a pixel border takes the pixel below/right). No normalisation.

    Non-finite values behave the same on both backends, without a host sync (checks would need one per call and
    break CUDA-graph capture; a diverging training run must still reach its NaN guard rather than an exception):

    - a query with a NaN or infinite coordinate returns 0 in every channel and passes no gradient;
    - an invalid Gaussian (sigma <= 0, |rho| >= 1, or a non-finite sigma, rho or opacity) makes every channel NaN at
      each query whose window holds its pixel (``mark_invalid_gaussians``: both backends set its opacity to NaN);
    - a non-finite feature value makes that channel non-finite (NaN or +-inf) at each query whose window holds it.

    Args:
        feat (Tensor): Feature of each LR pixel, [B, C, h, w], C >= 1.
        sigma (Tensor): (sigma_y, sigma_x) > 0 in LR-pixel units, [B, 2, h, w].
        rho (Tensor): Correlation in (-1, 1), [B, 1, h, w].
        opacity (Tensor): Opacity, [B, 1, h, w].
        coords (Tensor): Query centres (y, x) in [-1, 1], LIIF convention, [B, Q, 2]. Receives no gradient.
        radius (int): Window radius r in [0, 7]. Default: 3.
        backend (str, optional): ``'auto'``, ``'cuda'`` or ``'reference'``; None (or ``'auto'``) defers to the
            environment variable ``GAUSSIANSR_SPLAT`` when it is set. Default: None.

    Returns:
        Tensor: Splatted features, [B, Q, C], in the dtype of ``feat`` (computed in at least float32).
    """
    check_inputs(feat, sigma, rho, opacity, coords, radius)
    return _splat_checked(feat, sigma, rho, opacity, coords, int(radius), backend)


def _splat_checked(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor, coords: Tensor, radius: int,
                   backend: Optional[str]) -> Tensor:
    """``splat`` of inputs already checked."""
    if use_kernels(feat, backend):
        return splat_cuda(feat, sigma, rho, opacity, coords, radius).to(feat.dtype)
    return splat_reference(feat, sigma, rho, opacity, coords.detach(), radius).to(feat.dtype)


class SplatSource:
    """One image's splat inputs (feat, sigma, rho, opacity: as ``splat`` takes them), splatted at any number of
    query chunks by calling it with their coords: ``SplatSource(feat, sigma, rho, opacity, r)(coords)`` equals
    ``splat(feat, sigma, rho, opacity, coords, r)``.

    Without autograd on the CUDA kernels, the maps are laid out for the kernels once here (``splat_prepare``), not
    once per chunk: for a large image cut into many chunks that relayout of the whole map would dominate. With
    autograd (training), each call is ``splat``.
    """

    def __init__(self, feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor, radius: int = 3, *,
                 backend: Optional[str] = None):
        _check_tensors({'feat': feat, 'sigma': sigma, 'rho': rho, 'opacity': opacity}, feat)
        _check_map_shapes(feat, sigma, rho, opacity)
        _check_radius(radius)
        self.maps: Optional[Tuple[Tensor, ...]] = (feat, sigma, rho, opacity)
        self.radius = int(radius)
        self.backend = backend
        self._prepared: Optional[Tuple[Tensor, Tensor]] = None
        self._feat_like: Optional[Tensor] = None
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in self.maps)
        if not needs_grad and use_kernels(feat, backend):
            self._prepared = prepare_cuda(feat, sigma, rho, opacity)
            # the kernels read only the prepared copy: keep feat's batch, size, dtype and device, not its memory
            self._feat_like = feat.new_empty(feat.shape[0], 0, *feat.shape[-2:])
            self.maps = None

    def __call__(self, coords: Tensor) -> Tensor:
        """Splatted features at ``coords`` [B, Q, 2] -> [B, Q, C], in the dtype of ``feat``."""
        feat = self.maps[0] if self._prepared is None else self._feat_like  # the maps were checked in __init__
        _check_tensors({'coords': coords}, feat)
        _check_coords_shape(coords, feat.shape[0])
        if self._prepared is None:
            return _splat_checked(*self.maps, coords, self.radius, self.backend)
        return query_cuda(self._prepared, coords, feat.shape[-2:], self.radius).to(feat.dtype)


def use_kernels(feat: Tensor, backend: Optional[str] = None) -> bool:
    """Whether ``splat`` of ``feat`` runs on the CUDA kernels under ``backend`` (see the module docstring); raises
    when ``cuda`` was asked for and cannot be had, and warns once when CUDA inputs fall back to the reference."""
    choice = resolve_backend(backend)
    if choice == 'reference' or (choice == 'auto' and not (feat.is_cuda and feat.dtype != torch.float64)):
        return False
    if extension_loaded() and feat.is_cuda:
        return True
    if choice == 'cuda' and not extension_loaded():
        raise RuntimeError('splat backend "cuda" was requested, but the CUDA extension is unavailable') \
            from load_ext()[1]
    if choice == 'cuda':
        raise ValueError(f'splat backend "cuda" needs CUDA tensors, got feat on {feat.device}')
    _warn_fallback()
    return False


@torch.compiler.assume_constant_result
def extension_loaded() -> bool:
    """Whether the CUDA extension loads in this process; a constant to torch.compile, which cannot trace the import
    that ``load_ext`` may do (the answer is cached per process anyway)."""
    return load_ext()[0] is not None


def resolve_backend(backend: Optional[str] = None) -> str:
    """The backend in force: ``backend`` unless None or ``'auto'``, else ``$GAUSSIANSR_SPLAT``, else ``'auto'``."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend in (None, 'auto'):
        env = os.environ.get(ENV_BACKEND, '').strip().lower()
        if env and env not in BACKENDS:
            raise ValueError(f'environment variable {ENV_BACKEND} must be one of {BACKENDS}, got {env!r}')
        return env or 'auto'
    return backend


@functools.lru_cache(maxsize=1)
def _warn_fallback() -> None:
    """Log, once per process, that CUDA inputs are splatted by the slow reference."""
    from basicsr.utils import get_root_logger  # not at import: the logger must be set up by the caller first
    get_root_logger().warning(f'splat: falling back to the PyTorch reference for CUDA inputs (slower, more memory); '
                              f'{load_ext()[1]}. Set {ENV_BACKEND}=reference to silence this warning.')


def check_inputs(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor, coords: Tensor, radius: int) -> None:
    """Raise TypeError / ValueError naming the argument (and its shape) unless the inputs fit ``splat``."""
    _check_tensors({'feat': feat, 'sigma': sigma, 'rho': rho, 'opacity': opacity, 'coords': coords}, feat)
    _check_map_shapes(feat, sigma, rho, opacity)
    _check_coords_shape(coords, feat.shape[0])
    _check_radius(radius)


def _check_tensors(named: dict, feat: Tensor) -> None:
    """Each of ``named`` a floating-point tensor on the device of ``feat`` (checked first when among them)."""
    for name, value in named.items():
        if not isinstance(value, Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got {type(value).__name__}')
        if not value.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got {value.dtype}')
        if value.device != feat.device:
            raise ValueError(f'{name} must be on the device of feat ({feat.device}), got {value.device}')


def _check_map_shapes(feat: Tensor, sigma: Tensor, rho: Tensor, opacity: Tensor) -> None:
    if feat.dim() != 4 or min(feat.shape[1:]) < 1:
        raise ValueError(f'feat must have shape [B, C, h, w] with C, h, w >= 1, got {tuple(feat.shape)}')
    b, _, h, w = feat.shape
    for name, value, channels in (('sigma', sigma, 2), ('rho', rho, 1), ('opacity', opacity, 1)):
        if tuple(value.shape) != (b, channels, h, w):
            raise ValueError(f'{name} must have shape {(b, channels, h, w)} (from feat [B, C, h, w]), '
                             f'got {tuple(value.shape)}')


def _check_coords_shape(coords: Tensor, b: int) -> None:
    if coords.dim() != 3 or coords.shape[0] != b or coords.shape[2] != 2:
        raise ValueError(f'coords must have shape ({b}, Q, 2), got {tuple(coords.shape)}')


def _check_radius(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral):
        raise TypeError(f'radius must be an int, got {type(radius).__name__}')
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f'radius must be in [0, {MAX_RADIUS}], got {radius}')
