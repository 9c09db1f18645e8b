import pytest
import torch

from gaussiansr_plugin.archs.bicubic import bicubic_taps, rows_first, sample_bicubic, sample_bicubic_grid
from gaussiansr_plugin.archs.gaussian_util import coord_axis


@pytest.mark.parametrize('lr, hr', [((7, 9), (23, 31)), ((16, 5), (16, 5)), ((6, 6), (4, 13)), ((1, 3), (5, 1))])
def test_grid_sampling_equals_grid_sample(lr, hr):
    """Two 1D passes give grid_sample's bicubic values (border clamping included) at every grid point."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, *lr, generator=gen)
    ys, xs = coord_axis(hr[0]), coord_axis(hr[1])
    grid = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).view(1, -1, 2).expand(2, -1, -1)
    fast = sample_bicubic_grid(rows_first(x), bicubic_taps(ys, lr[0]), bicubic_taps(xs, lr[1]))
    torch.testing.assert_close(fast, sample_bicubic(x, grid), rtol=0, atol=1e-5)  # float32 rounding of values ~1


def test_grid_sampling_at_arbitrary_axes_and_slices():
    """Axes need not be pixel centres (tiles shift them), and a block of rows/columns samples its own slice."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 10, 12, generator=gen)
    ys = torch.sort(torch.rand(9, generator=gen) * 2 - 1).values
    xs = torch.tensor([-1.0, -0.97, -0.2, 0.0, 0.55, 1.0])
    rows, cols = bicubic_taps(ys, 10), bicubic_taps(xs, 12)
    block = sample_bicubic_grid(rows_first(x), tuple(t[2:5] for t in rows), tuple(t[1:4] for t in cols))
    grid = torch.stack(torch.meshgrid(ys[2:5], xs[1:4], indexing='ij'), dim=-1).view(1, -1, 2)
    torch.testing.assert_close(block, sample_bicubic(x, grid), rtol=0, atol=1e-5)  # float32 rounding of values ~1


def test_taps_are_clamped_and_weights_sum_to_one():
    index, weights = bicubic_taps(coord_axis(11), 4)
    assert index.min() == 0 and index.max() == 3 and index.dtype == torch.int64
    torch.testing.assert_close(weights.sum(1), torch.ones(11))
