"""Non-finite inputs of the splat op: the behaviour documented in ``splat``'s docstring, on the reference and the
dispatcher (the CUDA kernel is held to the same in test_splat_cuda.py)."""
import math

import pytest
import torch

from gaussiansr_plugin.ops.splat import splat
from gaussiansr_plugin.ops.splat.reference import mark_invalid_gaussians, query_centres, splat_reference
from shared_helpers import splat_inputs

BAD_COORDS = [float('nan'), float('inf'), -float('inf'), 1e30, -1e30]


def reaches(coords, h, w, radius, i, j):
    """[B, Q] whether each query's window holds LR pixel (i, j)."""
    _, _, cy, cx = query_centres(coords, h, w)
    return ((cy - i).abs() <= radius) & ((cx - j).abs() <= radius)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('fn', [splat_reference, splat], ids=['reference', 'dispatcher'])
def test_queries_with_non_finite_coordinates_return_zero_and_no_gradient(fn, dtype):
    feat, sigma, rho, opacity, coords = splat_inputs(2, 3, 6, 5, q=40, dtype=dtype)
    bad = coords.clone()
    for k, value in enumerate(BAD_COORDS):
        bad[0, k, k % 2] = value
        bad[1, 10 + k] = value
    leaves = [t.detach().requires_grad_() for t in (feat, sigma, rho, opacity)]
    out = fn(*leaves, bad, 3)
    hit = ~torch.isfinite(bad).all(-1) | (bad.abs() > 2).any(-1)
    assert hit.sum() == 2 * len(BAD_COORDS) and torch.equal(out[hit], torch.zeros_like(out[hit]))
    torch.testing.assert_close(out[~hit].view(2, -1, 3), splat_reference(feat, sigma, rho, opacity,
                                                                         coords[~hit].view(2, -1, 2), 3))
    grads = torch.autograd.grad(out.sum(), leaves)
    kept = [t.detach().requires_grad_() for t in (feat, sigma, rho, opacity)]
    expected = torch.autograd.grad(splat_reference(*kept, coords[~hit].view(2, -1, 2), 3).sum(), kept)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('fn', [splat_reference, splat], ids=['reference', 'dispatcher'])
@pytest.mark.parametrize('name, value', [('sigma', 0.0), ('sigma', -1.0), ('sigma', float('inf')), ('rho', 1.0),
                                         ('rho', float('nan')), ('opacity', float('nan')), ('opacity', float('inf'))])
def test_an_invalid_gaussian_is_nan_exactly_where_its_window_reaches(fn, name, value):
    inputs = dict(zip(('feat', 'sigma', 'rho', 'opacity', 'coords'), splat_inputs(2, 3, 6, 5, q=40)))
    inputs[name][0, 0, 2, 1] = value
    out = fn(*inputs.values(), 1)
    reached = reaches(inputs['coords'], 6, 5, 1, 2, 1)
    reached[1] = False  # the other batch item is untouched
    assert reached.any() and (~reached).any()
    assert torch.isnan(out[reached]).all() and torch.isfinite(out[~reached]).all()


def test_a_non_finite_feature_spoils_its_channel_where_its_window_reaches():
    feat, sigma, rho, opacity, coords = splat_inputs(2, 3, 6, 5, q=40)
    feat[0, 1, 3, 3] = float('inf')
    out = splat(feat, sigma, rho, opacity, coords, 1)
    reached = reaches(coords, 6, 5, 1, 3, 3)
    reached[1] = False
    assert not torch.isfinite(out[..., 1][reached]).any() and torch.isfinite(out[..., 1][~reached]).all()
    assert torch.isfinite(out[..., [0, 2]]).all()


def test_marking_invalid_gaussians_over_every_edge_value():
    """Valid means sigma > 0 and finite, |rho| < 1 and a finite opacity (NaN and infinities included); an invalid
    Gaussian becomes a unit circle of NaN opacity, a valid one is left as it is."""
    edges = torch.tensor([0.5, 0.0, -0.0, -0.1, 1e-45, 3e38, float('inf'), -float('inf'), float('nan'), 0.99, 1.0,
                          -1.0, -0.99])
    sigma_y, sigma_x, rho, opacity = torch.meshgrid(edges, edges, edges, edges, indexing='ij')
    sigma = torch.stack([sigma_y, sigma_x])[None]
    rho, opacity = rho[None, None], opacity[None, None]
    marked = mark_invalid_gaussians(sigma, rho, opacity)
    finite = [torch.tensor([math.isfinite(v) for v in t.flatten().tolist()]).view(t.shape)  # Python's own test
              for t in (sigma, rho, opacity)]
    valid = ((sigma > 0) & finite[0]).all(1, keepdim=True) & (rho.abs() < 1) & finite[2]
    assert 0 < valid.sum() < valid.numel()
    for got, given, fill in zip(marked, (sigma, rho, opacity), (1.0, 0.0, float('nan'))):
        expected = torch.where(valid, given, torch.full_like(given, fill))
        assert torch.equal(got.isnan(), expected.isnan()) and torch.equal(got.nan_to_num(), expected.nan_to_num())
