"""MLP decoder from per-query features to RGB (LIIF's imnet), on any leading shape."""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPDecoder(nn.Module):
    """Linear + GELU layers, then a linear projection to ``out_dim``; acts on the last dimension.

    Args:
        in_dim (int): Input features per query.
        out_dim (int): Output channels. Default: 3.
        hidden (Sequence[int]): Hidden widths. Default: (256, 256, 256, 256).

    Attributes:
        fuse_bf16 (bool): At inference under bfloat16 autocast on CUDA (``precision: bf16``), run each hidden layer
            as one cuBLASLt GEMM with the bias and the GELU in its epilogue, instead of a GEMM then a GELU that reads
            and writes the [Q, width] activations once more. cuBLASLt's GELU is the tanh form, within 5e-4 of the
            exact one. Default: False: on an H200 the epilogue GEMMs took 0.75 ms per 131072-query block against
            0.53 for the GEMMs and GELUs apart (``scripts/bench_query_parts.py``, docs/benchmarks.md).
    """

    def __init__(self, in_dim: int, out_dim: int = 3, hidden: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        layers, last = [], in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.GELU()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)
        self.fuse_bf16 = False

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_dim] -> [..., out_dim]."""
        if self.fuse_bf16 and x.is_cuda and not torch.is_grad_enabled() and torch.is_autocast_enabled('cuda') \
                and torch.get_autocast_dtype('cuda') == torch.bfloat16:
            return self.forward_fused(x, torch.bfloat16)
        return self.layers(x)

    def forward_fused(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """``forward`` in ``dtype`` with each hidden layer's bias and GELU fused into its GEMM (``fuse_bf16``); on
        the CPU the same call computes the exact GELU."""
        *lead, in_dim = x.shape
        h = x.reshape(-1, in_dim).to(dtype)
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        for linear in linears[:-1]:
            h = torch._addmm_activation(linear.bias.to(dtype), h, linear.weight.to(dtype).t(), use_gelu=True)
        last = linears[-1]
        return F.linear(h, last.weight.to(dtype), last.bias.to(dtype)).view(*lead, -1)
