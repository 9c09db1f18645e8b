"""CUDA kernels of the splat op against the float64 reference (skipped without a GPU or the extension)."""
import math

import pytest
import torch

import gaussiansr_plugin.ops.splat as splat_pkg
from gaussiansr_plugin.ops.splat import splat, splat_reference
from gaussiansr_plugin.ops.splat._backend import load_ext


def _extension_ready() -> bool:
    return torch.cuda.is_available() and load_ext()[0] is not None


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not _extension_ready(), reason='needs a CUDA GPU and the splat extension'),
]


def make_inputs(b, c, h, w, scale, seed=42, extra_q=64, dtype=torch.float32):
    """Inputs on CUDA; queries = the HR pixel centres at ``scale`` (non-integer: uneven buckets), image corners
    and pixel borders, and random points in [-1.1, 1.1] (windows leaving the image)."""
    gen = torch.Generator(device='cuda').manual_seed(seed)
    kw = {'device': 'cuda', 'generator': gen}
    feat = torch.randn(b, c, h, w, **kw)
    sigma = 0.3 + 1.7 * torch.rand(b, 2, h, w, **kw)
    rho = 1.9 * torch.rand(b, 1, h, w, **kw) - 0.95
    opacity = torch.rand(b, 1, h, w, **kw)
    big_h, big_w = round(h * scale), round(w * scale)
    ys = -1 + (2 * torch.arange(big_h, device='cuda') + 1) / big_h
    xs = -1 + (2 * torch.arange(big_w, device='cuda') + 1) / big_w
    grid = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).reshape(-1, 2)
    # binary-exact points: image corners, and pixel borders (ties) when 2 | h or 4 | h
    edges = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-0.5, 0.5], [0.0, 0.0], [0.5, -1.0]], device='cuda')
    # on a 2^-12 grid, so that (y + 1) * h / 2 is exact in float32 and the float64 reference finds the same centres
    rand = torch.round((2.2 * torch.rand(extra_q, 2, **kw) - 1.1) * 4096) / 4096
    coords = torch.cat([grid, edges, rand]).expand(b, -1, -1).contiguous()
    return [t.to(dtype) for t in (feat, sigma, rho, opacity)] + [coords]


def grads_of(fn, inputs, radius, g=None):
    leaves = [t.detach().requires_grad_() for t in inputs[:4]]
    out = fn(*leaves, inputs[4], radius)
    g = torch.randn_like(out, dtype=torch.float32) if g is None else g
    return out, g, torch.autograd.grad(out, leaves, g.to(out.dtype))


def assert_matches_reference(inputs, radius):
    """Kernel (float32) vs reference (float64 on the same values): forward and the 4 grads, one shared g."""
    out, g, grads = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, radius)
    ref, _, ref_grads = grads_of(splat_reference, [t.double() for t in inputs], radius, g.double())
    for name, a, b in zip(('out', 'feat', 'sigma', 'rho', 'opacity'), (out, *grads), (ref, *ref_grads)):
        assert torch.isfinite(a).all(), name
        scale = b.abs().max().item() + 1e-12
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=2e-5 * scale, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('radius', [1, 3, 5])
@pytest.mark.parametrize('c', [1, 8, 13, 64])
@pytest.mark.parametrize('b,h,w,scale', [(1, 9, 13, 2.7), (3, 12, 7, 3.35)])
def test_kernel_matches_reference(b, h, w, scale, c, radius):
    assert_matches_reference(make_inputs(b, c, h, w, scale, seed=b * 1000 + c * 10 + radius), radius)


@pytest.mark.parametrize('radius', [0, 2, 7])
def test_kernel_other_radii_and_small_scale(radius):
    assert_matches_reference(make_inputs(2, 4, 6, 5, 1.3, seed=radius), radius)


def test_auto_uses_kernel_and_handles_non_contiguous_feat():
    feat, sigma, rho, opacity, coords = make_inputs(2, 16, 8, 8, 4.0)
    sliced = feat.requires_grad_()[:, :8]  # what the arch passes: the first channels of the encoder features
    out = splat(sliced, sigma, rho, opacity, coords, 3)
    assert 'gaussiansr_splat_forward' in type(out.grad_fn).__name__  # the registered CUDA operator
    torch.testing.assert_close(out, splat_reference(sliced, sigma, rho, opacity, coords, 3), rtol=1e-4, atol=1e-4)


def test_backward_is_deterministic_and_works_in_deterministic_mode():
    inputs = make_inputs(2, 8, 24, 24, 3.6, extra_q=4096)
    g = torch.randn(2, inputs[4].shape[1], 8, device='cuda')
    first = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, 3, g)[2]
    torch.use_deterministic_algorithms(True)
    try:
        second = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, 3, g)[2]
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    inputs = make_inputs(2, 8, 10, 10, 2.5, dtype=dtype)
    out, g, grads = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, 3)
    assert out.dtype == dtype and all(t.dtype == dtype for t in grads)
    ref, _, ref_grads = grads_of(splat_reference, [t.float() for t in inputs], 3, g)
    tol = 1e-2 if dtype == torch.float16 else 2e-2
    for a, b in zip((out, *grads), (ref, *ref_grads)):
        torch.testing.assert_close(a.float(), b, rtol=tol, atol=tol * b.abs().max().item())


def test_zero_queries():
    feat, sigma, rho, opacity, _ = make_inputs(2, 8, 5, 5, 2.0)
    out, _, grads = grads_of(lambda *a: splat(*a, backend='cuda'),
                             (feat, sigma, rho, opacity, torch.zeros(2, 0, 2, device='cuda')), 3)
    assert out.shape == (2, 0, 8) and all(t.abs().max() == 0 for t in grads)


def test_large_number_of_queries():
    inputs = make_inputs(1, 8, 256, 256, 4.0, extra_q=0)  # 1024 x 1024 queries
    assert_matches_reference(inputs, 3)
    g = torch.randn(1, inputs[4].shape[1], 8, device='cuda')
    first = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, 3, g)[2]
    second = grads_of(lambda *a: splat(*a, backend='cuda'), inputs, 3, g)[2]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_training_shape_random_queries():
    gen = torch.Generator(device='cuda').manual_seed(0)
    inputs = make_inputs(16, 8, 48, 48, 1.0, extra_q=0)
    inputs[4] = torch.round((2 * torch.rand(16, 2304, 2, device='cuda', generator=gen) - 1) * 4096) / 4096
    assert_matches_reference(inputs, 3)


@pytest.mark.parametrize('radius', [1, 3])
def test_every_window_split_gives_the_same_gradients(radius):
    inputs = make_inputs(2, 13, 7, 9, 5.5, extra_q=256)
    feat, sigma, rho, opacity, coords = inputs
    ext = load_ext()[0]
    out, feat_t, params = ext.forward(feat, sigma, rho, opacity, coords, radius)
    g = torch.randn_like(out)
    _, _, ref_grads = grads_of(splat_reference, [t.double() for t in inputs], radius, g.double())
    for parts in range(1, 2 * radius + 2):
        grads = ext.backward(g, coords, feat_t, params, sigma, rho, radius, parts)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=2e-5 * b.abs().max().item())


def test_auto_falls_back_with_one_warning(monkeypatch):
    import basicsr.utils
    messages = []
    logger = type('Logger', (), {'warning': lambda self, msg: messages.append(msg)})()
    monkeypatch.setattr(basicsr.utils, 'get_root_logger', lambda: logger)
    monkeypatch.setattr(splat_pkg, 'load_ext', lambda: (None, ImportError('build failed')))
    splat_pkg._warn_fallback.cache_clear()
    inputs = make_inputs(1, 4, 6, 6, 2.0)
    try:
        outs = [splat(*inputs, radius=2) for _ in range(2)]
    finally:
        splat_pkg._warn_fallback.cache_clear()
    assert len(messages) == 1 and 'build failed' in messages[0]
    torch.testing.assert_close(outs[0], splat_reference(*inputs, 2))
    assert math.isclose(outs[0].sum().item(), outs[1].sum().item())


def test_non_finite_inputs_behave_as_in_the_reference():
    """The behaviour documented in ``splat``: 0 for non-finite coordinates, NaN where an invalid Gaussian reaches,
    a non-finite channel where a non-finite feature reaches; the same on both backends."""
    feat, sigma, rho, opacity, coords = make_inputs(2, 8, 9, 7, 2.3)
    for k, value in enumerate([float('nan'), float('inf'), -float('inf'), 1e30, -1e30]):
        coords[0, k, k % 2] = value
        coords[1, 7 + k] = value
    assert_matches_reference([feat, sigma, rho, opacity, coords], 3)  # outputs and gradients, all finite
    out = splat(feat, sigma, rho, opacity, coords, 3, backend='cuda')
    bad = ~torch.isfinite(coords).all(-1) | (coords.abs() > 2).any(-1)
    assert torch.equal(out[bad], torch.zeros_like(out[bad]))

    sigma[0, 0, 2, 3], rho[1, 0, 4, 4], opacity[0, 0, 6, 1], feat[1, 3, 1, 1] = 0.0, 1.0, float('nan'), float('inf')
    out = splat(feat, sigma, rho, opacity, coords, 3, backend='cuda')
    ref = splat_reference(*[t.double() for t in (feat, sigma, rho, opacity, coords)], 3)
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(out), finite) and (~finite).any() and finite.any()
    others = [c for c in range(8) if c != 3]  # channel 3 may be inf or NaN (0 * inf where a weight underflows)
    assert torch.equal(torch.isnan(out[..., others]), torch.isnan(ref[..., others]))
    torch.testing.assert_close(out[finite].double(), ref[finite], rtol=1e-4, atol=1e-4)


def test_a_source_prepared_once_splats_every_chunk_as_splat_does():
    """Without autograd, SplatSource lays the maps out for the kernels once (splat_prepare) and each chunk only
    queries them (splat_query): bitwise the fused forward's result; with autograd it is the fused forward itself."""
    feat, sigma, rho, opacity, coords = make_inputs(2, 40, 19, 23, 2.7)
    with torch.no_grad():
        source = splat_pkg.SplatSource(feat, sigma, rho, opacity, 3)
        assert source._prepared is not None
        chunks = [source(c) for c in coords.split(500, dim=1)]
        whole = splat(feat, sigma, rho, opacity, coords, 3)
    assert torch.equal(torch.cat(chunks, dim=1), whole)
    feat.requires_grad_(True)
    trained = splat_pkg.SplatSource(feat, sigma, rho, opacity, 3)
    assert trained._prepared is None
    trained(coords).sum().backward()
    assert feat.grad is not None


def test_prepare_and_query_operators_trace_under_compile():
    feat, sigma, rho, opacity, coords = make_inputs(1, 8, 9, 11, 2.0)

    def run(feat, sigma, rho, opacity, coords):
        return splat_pkg.SplatSource(feat, sigma, rho, opacity, 2)(coords)

    with torch.no_grad():
        compiled = torch.compile(run, fullgraph=True)(feat, sigma, rho, opacity, coords)
        torch.testing.assert_close(compiled, run(feat, sigma, rho, opacity, coords), rtol=0, atol=0)
