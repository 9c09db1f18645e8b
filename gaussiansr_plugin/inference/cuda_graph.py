"""``GaussianSR.upsample`` replayed from CUDA graphs on request: one graph per input key from the first call (frames,
tiles, benchmarks), under its own autocast. ``GaussianSR.upsample`` itself records what repeats
(``archs/upsample_graphs.py``, where the recording lives); this class records every key at once and keeps them all.
The replay runs the very kernels of the plain call on the same inputs, so its output is bitwise equal
(tests/test_inference/test_cuda_graph.py, on a GPU).
"""
from typing import Dict, Tuple

import torch
from torch import Tensor

from ..archs.gaussiansr_arch import GaussianSR
from ..archs.upsample_graphs import GraphReplay

GraphKey = Tuple[Tuple[int, ...], Tuple[int, int], int, torch.dtype, torch.dtype]


class GraphedUpsample:
    """Callable like ``net.upsample(lq, size)`` (whole images, no tiling), under no_grad and optional autocast.

    Args:
        net (GaussianSR): A CUDA network in eval mode; its weights may change between calls (the graphs read them in
            place), its structure may not.
        chunk_size (int, optional): Queries per chunk. Default: the network's.
        autocast_dtype (torch.dtype, optional): Run under ``torch.autocast('cuda', dtype)``; None for float32.

    One graph (and its private memory pool, as large as one plain call's peak) is kept per distinct input key.
    """

    def __init__(self, net: GaussianSR, chunk_size: int = None, autocast_dtype: torch.dtype = None):
        if net.training:
            raise ValueError('GraphedUpsample needs the network in eval mode (Gumbel sampling is random in training)')
        self.net = net
        self.chunk_size = int(chunk_size or net.chunk_size)
        self.autocast_dtype = autocast_dtype
        self._graphs: Dict[GraphKey, GraphReplay] = {}

    def __call__(self, lq: Tensor, size: Tuple[int, int]) -> Tensor:
        """[B, 3, h, w] CUDA tensor in [0, 1] -> [B, 3, H, W] (a fresh tensor, not the graph's buffer)."""
        if not lq.is_cuda:
            raise ValueError(f'GraphedUpsample needs a CUDA input, got one on {lq.device}')
        size = (int(size[0]), int(size[1]))
        key = (tuple(lq.shape), size, lq.device.index, lq.dtype, self.autocast_dtype)
        with torch.no_grad(), torch.autocast('cuda', dtype=self.autocast_dtype or torch.float32,
                                             enabled=self.autocast_dtype is not None):
            if key not in self._graphs:
                self._graphs[key] = GraphReplay(lambda x: self.net.render_whole(x, size, self.chunk_size), lq)
            return self._graphs[key].replay(lq)
