"""MLP decoder from per-query features to RGB (LIIF's imnet), on any leading shape."""
from typing import Sequence

from torch import Tensor, nn


class MLPDecoder(nn.Module):
    """Linear + GELU layers, then a linear projection to ``out_dim``; acts on the last dimension.

    Args:
        in_dim (int): Input features per query.
        out_dim (int): Output channels. Default: 3.
        hidden (Sequence[int]): Hidden widths. Default: (256, 256, 256, 256).
    """

    def __init__(self, in_dim: int, out_dim: int = 3, hidden: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        layers, last = [], in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.GELU()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_dim] -> [..., out_dim]."""
        return self.layers(x)
