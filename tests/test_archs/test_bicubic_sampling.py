"""The bicubic stream's gathered form (archs/bicubic_sampling.py) against grid_sample, values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from gaussiansr_plugin.archs.bicubic_sampling import GatheredBicubic, bicubic_taps, sample_bicubic

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _grid_sample(x, coord):
    grid = coord.flip(-1).unsqueeze(1).float()
    return F.grid_sample(x.float(), grid, mode='bicubic', padding_mode='border', align_corners=False)[:, :, 0] \
        .transpose(1, 2)


def _value_and_grad(fn, x, coord, weights):
    x = x.detach().requires_grad_()
    out = fn(x, coord)
    (out * weights).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize('b, c, h, w, q', [(2, 5, 7, 9, 300), (1, 3, 1, 1, 20), (3, 4, 2, 6, 100)])
def test_the_gathered_form_is_grid_sample_with_its_gradient(b, c, h, w, q):
    """Queries inside the map and up to 20 % outside it (border padding), maps down to one pixel."""
    gen = torch.Generator().manual_seed(b * 100 + h)
    x = torch.randn(b, c, h, w, generator=gen)
    coord = torch.rand(b, q, 2, generator=gen) * 2.4 - 1.2
    weights = torch.randn(b, q, c, generator=gen)
    out, grad = _value_and_grad(GatheredBicubic.apply, x, coord, weights)
    ref_out, ref_grad = _value_and_grad(_grid_sample, x, coord, weights)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)


def test_autocast_leaves_the_weighted_sum_in_float32():
    x, coord = torch.randn(2, 4, 6, 5), torch.rand(2, 40, 2) * 2 - 1
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = GatheredBicubic.apply(x, coord)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _grid_sample(x, coord), rtol=0, atol=1e-5)


def test_the_gradient_comes_back_in_the_map_dtype_and_layout():
    x = torch.randn(2, 6, 5, 4).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = GatheredBicubic.apply(x, torch.rand(2, 30, 2) * 2 - 1)
    out.sum().backward()
    assert out.dtype == torch.float32 and x.grad.dtype == torch.bfloat16 and x.grad.shape == x.shape


def test_the_taps_are_a_partition_of_unity_inside_the_map():
    index, weights = bicubic_taps(torch.rand(2, 50, 2) * 2 - 1, 6, 8)
    assert index.shape == weights.shape == (2, 50, 16)
    assert index.min() >= 0 and index.max() < 6 * 8
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 50))


def test_without_a_gpu_or_a_gradient_the_stream_is_grid_sample():
    x, coord = torch.randn(1, 3, 4, 5, requires_grad=True), torch.rand(1, 10, 2) * 2 - 1
    assert torch.equal(sample_bicubic(x, coord), _grid_sample(x, coord))


@cuda
def test_on_a_gpu_training_takes_the_gathered_form_and_records_in_a_graph():
    x = torch.randn(4, 9, 12, 10, device='cuda', requires_grad=True)
    coord = torch.rand(4, 500, 2, device='cuda') * 2 - 1
    weights = torch.randn(4, 500, 9, device='cuda')
    out, grad = _value_and_grad(sample_bicubic, x, coord, weights)
    ref_out, ref_grad = _value_and_grad(_grid_sample, x, coord, weights)
    assert sample_bicubic(x, coord).grad_fn.name() == 'GatheredBicubicBackward'
    assert sample_bicubic(x, coord.clone().requires_grad_()).grad_fn.name() != 'GatheredBicubicBackward'
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)
    static = x.detach().clone().requires_grad_()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        (sample_bicubic(static, coord) * weights).sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    static.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        (sample_bicubic(static, coord) * weights).sum().backward()
    graph.replay()
    torch.testing.assert_close(static.grad, ref_grad, rtol=0, atol=1e-5)
