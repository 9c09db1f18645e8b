"""Host memory of an upscale on the CPU, estimated before rendering: tile automatically, or refuse in one line.

A CUDA run shrinks its query chunk to the free device memory and retries smaller plans on out-of-memory errors; on
the CPU an allocation that does not fit ends in the allocator (or the OOM killer), so the plan is fitted to the
memory the OS reports as available before anything runs. The estimate is derived from the network's shapes:

- per LR pixel, while the encoder and the kernel choice run: ``ENCODER_MAPS`` feature maps of the encoder's width
  (input, output and residual of a block, the convolutions' buffers), the selection head's maps and the bicubic
  stream (2.4 KB for the paper configuration);
- per query of a chunk: the decoder's activations (``GaussianSR.query_bytes``) and the splat reference's window
  of (2r+1)^2 Gaussians with their splatted channels (``GaussianSR.splatted_channels``) and indices;
- per output pixel, held whole whatever the tiling: ``OUTPUT_VALUES`` float32 values (the rendered tensor, the
  NumPy copy and the conversions to the file's pixel type).
"""
import os
from dataclasses import replace
from typing import Optional, Tuple

from torch import nn

from ..archs.gaussiansr_arch import MIN_CHUNK_SIZE
from ..errors import UserError
from ..ops.splat.reference import DEFAULT_CHUNK_SIZE as SPLAT_CHUNK_SIZE
from .upscaler import MIN_TILE, RenderPlan

ENCODER_MAPS = 6
OUTPUT_VALUES = 28
USABLE = 0.8  # of the available memory: the OS, the decoded input and allocator slack need the rest


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes 'max' for no limit


def available_memory() -> int:
    """Bytes the OS reports as available to a new allocation: ``MemAvailable`` (free pages where there is no
    /proc/meminfo), capped by the cgroup v2 limit of a container."""
    available = None
    try:
        with open('/proc/meminfo') as f:
            available = next((int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable:')), None)
    except OSError:
        pass
    if available is None:
        available = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    limit, used = _read_int('/sys/fs/cgroup/memory.max'), _read_int('/sys/fs/cgroup/memory.current')
    return min(available, limit - used) if limit is not None and used is not None else available


def _conv_channels(module: Optional[nn.Module]) -> list:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)] if module is not None else []


def lr_pixel_bytes(net: nn.Module) -> int:
    """Bytes per LR pixel while the encoder and the kernel choice run (see the module docstring)."""
    width = max(_conv_channels(net.encoder) or [net.encoder.num_feat_out])
    head = sum(_conv_channels(getattr(net, 'head', None)))
    side = net.encoder.num_feat_out - net.num_gaussian_channels + 3
    return 4 * (ENCODER_MAPS * width + head + side)


def query_bytes(net: nn.Module, chunk_size: int) -> int:
    """Bytes of one query chunk on the CPU: the decoder's activations and the splat reference's window."""
    window = (2 * net.radius + 1)**2 * (4 * (net.splatted_channels + 8) + 8)
    splatted = min(chunk_size, SPLAT_CHUNK_SIZE) * window if net.has_gaussians else 0
    return chunk_size * net.query_bytes() + splatted


def held_bytes(lr_size: Tuple[int, int], out_size: Tuple[int, int]) -> int:
    """Host memory held whatever the plan and device: the output with its copies on the way to the file, and the
    decoded input."""
    return 4 * OUTPUT_VALUES * out_size[0] * out_size[1] + 16 * lr_size[0] * lr_size[1]


def estimate_bytes(net: nn.Module, lr_size: Tuple[int, int], out_size: Tuple[int, int], chunk_size: int,
                   tile: Optional[int] = None, tile_overlap: int = 0) -> int:
    """Peak host memory of rendering ``lr_size`` -> ``out_size`` on the CPU with a chunk size and optional LR
    tiles (``tile`` None: as ``upsample`` would choose them)."""
    tile, tile_overlap = net.tiling(*lr_size, tile, tile_overlap)
    lr_side = (min(lr_size[0], tile + 2 * tile_overlap), min(lr_size[1], tile + 2 * tile_overlap)) if tile else lr_size
    scale = out_size[0] * out_size[1] / (lr_size[0] * lr_size[1])
    working = lr_pixel_bytes(net) * lr_side[0] * lr_side[1] + query_bytes(net, chunk_size)
    # a tile's query grid and rendered pixels (float32 y, x, r, g, b); untiled, the grid alone (the result is held)
    grid = 20 * scale * tile * tile if tile else 8 * out_size[0] * out_size[1]
    return int(held_bytes(lr_size, out_size) + working + grid)


def _too_large(lr_size: Tuple[int, int], out_size: Tuple[int, int], need: int, budget: float, how: str) -> UserError:
    return UserError(f'upscaling {lr_size[1]}x{lr_size[0]} to {out_size[1]}x{out_size[0]} needs about '
                     f'{need / 2**30:.1f} GiB of memory {how}, {budget / 2**30:.1f} GiB usable here: use a smaller '
                     'scale or size, or a machine with more memory')


def fit_to_memory(net: nn.Module, lr_size: Tuple[int, int], out_size: Tuple[int, int], plan: RenderPlan,
                  device_type: str = 'cpu', available: Optional[int] = None) -> Tuple[RenderPlan, str]:
    """The plan, with a smaller chunk and LR tiles when the CPU estimate exceeds the usable host memory, and a note
    saying so ('' when unchanged). On a GPU only the host memory held whatever the plan is checked (the device fits
    its chunks to its free memory and retries smaller plans itself).

    Raises:
        UserError: Even the smallest chunk and tile do not fit (or, on a GPU, the input and output alone).
    """
    budget = USABLE * (available_memory() if available is None else available)
    if device_type != 'cpu':
        if held_bytes(lr_size, out_size) > budget:
            raise _too_large(lr_size, out_size, held_bytes(lr_size, out_size), budget, 'for the input and output')
        return plan, ''

    def need(p: RenderPlan) -> int:
        return estimate_bytes(net, lr_size, out_size, p.chunk_size, p.tile, p.tile_overlap)

    if need(plan) <= budget:
        return plan, ''
    fitted = plan
    while need(fitted) > budget and fitted.chunk_size > MIN_CHUNK_SIZE:
        fitted = replace(fitted, chunk_size=max(MIN_CHUNK_SIZE, fitted.chunk_size // 2))
    tile = fitted.tile or max(lr_size)
    while need(fitted) > budget and tile > MIN_TILE:
        tile = max(MIN_TILE, tile // 2)
        fitted = replace(fitted, tile=tile)
    if need(fitted) > budget:
        raise _too_large(lr_size, out_size, need(fitted), budget, f'even in {MIN_TILE}-pixel tiles')
    tiles = f' and {fitted.tile}-pixel tiles' if fitted.tile else ''
    return fitted, (f'the estimated {need(plan) / 2**30:.1f} GiB exceed the {budget / 2**30:.1f} GiB of memory usable '
                    f'here: rendering with chunk size {fitted.chunk_size}{tiles}')
