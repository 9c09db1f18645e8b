"""Matlab-style bicubic resize to an exact output size, built on BasicSR's ``imresize`` weights.

BasicSR's ``basicsr.utils.matlab_functions.imresize(img, scale)`` takes one scale for both axes and
returns ``ceil(n * scale)`` pixels, so it cannot hit an arbitrary ``h x w`` target (for example a
48x48 LR patch from a 139x139 HR crop, or the LR of a non-square image at scale 2.4). Matlab's
``imresize(img, [h w])`` uses the per-axis scale ``out / in``; :func:`imresize_to` does the same with
BasicSR's own ``calculate_weights_indices`` (same cubic kernel, antialiasing and symmetric border),
written as one sparse matrix per axis. When BasicSR's ``imresize`` can produce the target size with
the same per-axis ratio, both give the same numbers (to float32 rounding).
"""
from functools import lru_cache
from typing import Sequence

import numpy as np
from basicsr.utils.matlab_functions import calculate_weights_indices
from scipy import sparse


def _reflect(index: np.ndarray, length: int) -> np.ndarray:
    """Map 0-based indices outside ``[0, length)`` back inside by symmetric (edge-repeating) reflection."""
    period = 2 * length
    index = np.mod(index, period)
    return np.where(index >= length, period - 1 - index, index)


@lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, antialiasing: bool = True) -> sparse.csr_matrix:
    """The linear map of a Matlab bicubic resize along one axis.

    Args:
        in_length (int): Input length (pixels).
        out_length (int): Output length (pixels).
        antialiasing (bool): Widen the kernel when downscaling (Matlab's default). Default: True.

    Returns:
        scipy.sparse.csr_matrix: [out_length, in_length], float32; each row sums to 1.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f'resize lengths must be >= 1, got in_length={in_length}, out_length={out_length}')
    weights, indices, sym_len_s, _ = calculate_weights_indices(in_length, out_length, out_length / in_length, 'cubic',
                                                               4, antialiasing)
    weights = weights.double().numpy()
    # BasicSR's indices point into the input padded by ``sym_len_s`` mirrored pixels at the start.
    source = _reflect(indices.long().numpy() - int(sym_len_s), in_length)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    matrix = sparse.coo_matrix((weights.ravel(), (rows, source.ravel())), shape=(out_length, in_length))
    return matrix.tocsr().astype(np.float32)  # duplicates (reflected taps) are summed here


def imresize_to(img: np.ndarray, size: Sequence[int], antialiasing: bool = True) -> np.ndarray:
    """Resize an image to exactly ``size`` with Matlab's bicubic kernel (BasicSR's ``imresize`` weights).

    Args:
        img (np.ndarray): [H, W, C] or [H, W], float (any range; typically [0, 1]).
        size (Sequence[int]): Output (h, w).
        antialiasing (bool): Antialias when downscaling, as Matlab does. Default: True.

    Returns:
        np.ndarray: [h, w, C] or [h, w], float32, not clipped or rounded.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f'img must be [H, W] or [H, W, C], got shape {img.shape}')
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = img.shape[:2]
    squeeze = img.ndim == 2
    x = np.asarray(img, dtype=np.float32)
    x = x[..., None] if squeeze else x
    chans = x.shape[2]
    # rows: [h, H] @ [H, W*C]; then columns: [w, W] @ [W, h*C]
    rows = resize_matrix(in_h, out_h, antialiasing) @ x.reshape(in_h, in_w * chans)
    rows = rows.reshape(out_h, in_w, chans).transpose(1, 0, 2).reshape(in_w, out_h * chans)
    out = (resize_matrix(in_w, out_w, antialiasing) @ rows).reshape(out_w, out_h, chans).transpose(1, 0, 2)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[..., 0] if squeeze else out


def quantize_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the 8-bit grid, as if the image were saved as a PNG and read back.

    Args:
        img (np.ndarray): Any shape, float in about [0, 1].

    Returns:
        np.ndarray: Same shape, float32, values k / 255.
    """
    return (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
