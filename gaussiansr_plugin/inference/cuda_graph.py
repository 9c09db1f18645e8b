"""``GaussianSR.upsample`` replayed from CUDA graphs: for many images of one size (frames, tiles, benchmarks).

At small sizes the GPU finishes each of the ~100 kernels of an upsample faster than Python can launch the next, so
the launch overhead is most of the latency. A CUDA graph records the launches once per (input shape, output size,
dtype) and replays them with one call. The replay runs the very kernels of the plain call on the same inputs, so its
output is bitwise equal (tests/test_inference/test_cuda_graph.py, on a GPU).
"""
from typing import Dict, Tuple

import torch
from torch import Tensor

from ..archs.gaussiansr_arch import GaussianSR

_WARMUP_CALLS = 2  # cuDNN autotuning, lazy allocations and the splat extension's first load happen before capture

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
        self._graphs: Dict[GraphKey, Tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}

    def _plain(self, lq: Tensor, size: Tuple[int, int]) -> Tensor:
        # autocast's weight-cast cache would hand the graph tensors freed after capture: capture with it off
        with torch.no_grad(), torch.autocast('cuda', dtype=self.autocast_dtype or torch.float32,
                                             enabled=self.autocast_dtype is not None, cache_enabled=False):
            return self.net.upsample(lq, size, chunk_size=self.chunk_size)

    def _capture(self, lq: Tensor, size: Tuple[int, int]) -> Tuple[torch.cuda.CUDAGraph, Tensor, Tensor]:
        static_in = lq.clone()
        side = torch.cuda.Stream(lq.device)
        side.wait_stream(torch.cuda.current_stream(lq.device))
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_CALLS):
                self._plain(static_in, size)
        torch.cuda.current_stream(lq.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._plain(static_in, size)
        return graph, static_in, static_out

    def __call__(self, lq: Tensor, size: Tuple[int, int]) -> Tensor:
        """[B, 3, h, w] CUDA tensor in [0, 1] -> [B, 3, H, W] (a fresh tensor, not the graph's buffer)."""
        if not lq.is_cuda:
            raise ValueError(f'GraphedUpsample needs a CUDA input, got one on {lq.device}')
        size = (int(size[0]), int(size[1]))
        key = (tuple(lq.shape), size, lq.device.index, lq.dtype, self.autocast_dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(lq, size)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(lq)
        graph.replay()
        return static_out.clone()
