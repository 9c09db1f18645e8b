"""The splat CUDA kernels as torch.library operators (ops/splat/function.py), checked on the CPU: the kernels are
replaced by a stand-in built on the reference, so what is tested here is the registration (schemas, fake shapes,
autograd wiring, tracing by torch.compile); tests/test_ops/test_splat_cuda.py checks the kernels themselves."""
import types

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gaussiansr_plugin.ops.splat import function, splat_reference


def _dense_only(entry):
    """The extension's layout check (csrc/splat.cpp): every tensor argument contiguous."""

    def checked(*args):
        for arg in args:
            if isinstance(arg, torch.Tensor) and not arg.is_contiguous():
                raise RuntimeError(f'{entry.__name__}: a tensor argument must be contiguous')
        return entry(*args)

    return checked


def _stand_in_ext() -> types.SimpleNamespace:
    """The extension's entry points, computed by the reference on any device (the stand-in's params are sigma_y,
    sigma_x, rho and opacity; the kernels' hold the conic instead), with the extension's contiguity check."""

    def prepare(feat, sigma, rho, opacity):
        params = torch.cat([sigma.flatten(2), rho.flatten(2), opacity.flatten(2)], 1).transpose(1, 2)  # [B, N, 4]
        return feat.flatten(2).transpose(1, 2).contiguous(), params.contiguous()

    def query(feat_t, params, coords, h, w, radius):
        b, _, c = feat_t.shape
        maps = [t.transpose(1, 2).reshape(b, -1, h, w) for t in (feat_t, params)]
        return splat_reference(maps[0], maps[1][:, :2], maps[1][:, 2:3], maps[1][:, 3:], coords, radius)

    def forward(feat, sigma, rho, opacity, coords, radius):
        feat_t, params = prepare(feat, sigma, rho, opacity)
        return query(feat_t, params, coords, *feat.shape[-2:], radius), feat_t, params

    def backward(grad_out, coords, feat_t, params, sigma, rho, radius, parts):
        b, n, c = feat_t.shape
        h, w = sigma.shape[-2:]
        primals = (feat_t.transpose(1, 2).reshape(b, c, h, w), sigma, rho, params[..., 3].reshape(b, 1, h, w))
        _, vjp = torch.func.vjp(lambda *p: splat_reference(*p, coords, radius), *primals)  # runs inside an operator
        return vjp(grad_out)

    return types.SimpleNamespace(prepare=_dense_only(prepare), query=_dense_only(query),
                                 forward=_dense_only(forward), backward=_dense_only(backward),
                                 channels_per_thread=lambda c: 1)


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(function, '_ext', _stand_in_ext)
    monkeypatch.setattr(function, 'backward_parts', lambda *args: 1)


def _inputs(seed=0, b=2, c=3, h=5, w=6, q=40):
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(b, c, h, w, generator=gen)
    sigma = 0.4 + torch.rand(b, 2, h, w, generator=gen)
    rho = 1.6 * torch.rand(b, 1, h, w, generator=gen) - 0.8
    opacity = torch.rand(b, 1, h, w, generator=gen)
    coords = 2.2 * torch.rand(b, q, 2, generator=gen) - 1.1
    return feat, sigma, rho, opacity, coords


def _grads(fn, inputs):
    leaves = [t.clone().requires_grad_() for t in inputs[:4]]
    out = fn(*leaves, inputs[4], 2)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), [t.grad for t in leaves]


def test_the_operator_forwards_and_differentiates_like_the_reference(stand_in):
    inputs = _inputs()
    out, grads = _grads(function.splat_cuda, inputs)
    ref_out, ref_grads = _grads(splat_reference, inputs)
    torch.testing.assert_close(out, ref_out)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected)


def test_the_operators_take_inputs_of_any_layout(stand_in):
    """A program of torch.export or torch.compile may call an operator with strides other than the eager ones: each
    operator hands the kernels dense copies, so strided inputs give the contiguous inputs' results."""

    def strided(t):
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)

    feat, sigma, rho, opacity, coords = _inputs(seed=4)
    ops = torch.ops.gaussiansr
    dense = ops.splat_forward(feat, sigma, rho, opacity, coords, 2)
    for got, expected in zip(ops.splat_forward(*map(strided, (feat, sigma, rho, opacity, coords)), 2), dense):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    out, feat_t, params = dense
    grads = ops.splat_backward(out, coords, feat_t, params, sigma, rho, 2, 1)
    strided_grads = ops.splat_backward(*map(strided, (out, coords, feat_t, params, sigma, rho)), 2, 1)
    for got, expected in zip(strided_grads, grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    halves = ops.splat_prepare(*map(strided, (feat, sigma, rho, opacity)))
    torch.testing.assert_close(ops.splat_query(*map(strided, (*halves, coords)), 5, 6, 2), out, rtol=0, atol=0)


def test_fake_shapes_need_no_kernel():
    with FakeTensorMode():
        feat, sigma, rho, opacity, coords = (t.to('cuda') for t in _inputs())
        out, feat_t, params = torch.ops.gaussiansr.splat_forward(feat, sigma, rho, opacity, coords, 2)
        grads = torch.ops.gaussiansr.splat_backward(out, coords, feat_t, params, sigma, rho, 2, 1)
    assert (out.shape, feat_t.shape, params.shape) == ((2, 40, 3), (2, 30, 3), (2, 30, 4))
    assert [g.shape for g in grads] == [feat.shape, sigma.shape, rho.shape, opacity.shape]
    assert out.device.type == 'cuda'


def test_opcheck(stand_in):
    feat, sigma, rho, opacity, coords = _inputs()
    args = (feat.requires_grad_(), sigma.requires_grad_(), rho.requires_grad_(), opacity.requires_grad_(), coords, 2)
    torch.library.opcheck(torch.ops.gaussiansr.splat_forward, args)


def test_torch_compile_traces_through_without_a_graph_break(stand_in):
    inputs = _inputs(seed=1)
    compiled = torch.compile(function.splat_cuda, fullgraph=True, backend='aot_eager')
    out, grads = _grads(compiled, inputs)
    ref_out, ref_grads = _grads(function.splat_cuda, inputs)
    torch.testing.assert_close(out, ref_out)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected)


def test_prepared_maps_queried_by_chunks_give_the_forward(stand_in, monkeypatch):
    """The forward's two halves (``splat_prepare`` once, ``splat_query`` per chunk) and ``SplatSource`` on them."""
    import gaussiansr_plugin.ops.splat as splat_pkg
    feat, sigma, rho, opacity, coords = _inputs(seed=2)
    prepared = function.prepare_cuda(feat, sigma, rho, opacity)
    chunks = torch.cat([function.query_cuda(prepared, c, (5, 6), 2) for c in coords.split(15, dim=1)], dim=1)
    torch.testing.assert_close(chunks, function.splat_cuda(feat, sigma, rho, opacity, coords, 2), rtol=0, atol=0)
    monkeypatch.setattr(splat_pkg, 'use_kernels', lambda feat, backend=None: True)
    with torch.no_grad():
        source = splat_pkg.SplatSource(feat, sigma, rho, opacity, 2)
        assert source._prepared is not None
        torch.testing.assert_close(source(coords), chunks, rtol=0, atol=0)


def test_fake_shapes_of_the_halves_need_no_kernel():
    with FakeTensorMode():
        feat, sigma, rho, opacity, coords = (t.to('cuda') for t in _inputs())
        feat_t, params = torch.ops.gaussiansr.splat_prepare(feat, sigma, rho, opacity)
        out = torch.ops.gaussiansr.splat_query(feat_t, params, coords, 5, 6, 2)
    assert (feat_t.shape, params.shape, out.shape) == ((2, 30, 3), (2, 30, 4), (2, 40, 3))


def test_opcheck_of_the_halves(stand_in):
    feat, sigma, rho, opacity, coords = _inputs()
    torch.library.opcheck(torch.ops.gaussiansr.splat_prepare, (feat, sigma, rho, opacity))
    feat_t, params = torch.ops.gaussiansr.splat_prepare(feat, sigma, rho, opacity)
    torch.library.opcheck(torch.ops.gaussiansr.splat_query, (feat_t, params, coords, 5, 6, 2))


def test_torch_export_keeps_the_operators_as_nodes(stand_in):
    """torch.export traces through the operators (their fake shapes) and keeps each as one node of the program,
    which then runs like the eager call."""
    feat, sigma, rho, opacity, coords = _inputs(seed=3)

    class Splat(torch.nn.Module):
        def forward(self, feat, sigma, rho, opacity, coords):
            prepared = function.prepare_cuda(feat, sigma, rho, opacity)
            queried = function.query_cuda(prepared, coords, (5, 6), 2)
            return queried + function.splat_cuda(feat, sigma, rho, opacity, coords, 2)

    program = torch.export.export(Splat(), (feat, sigma, rho, opacity, coords))
    targets = [str(node.target) for node in program.graph.nodes if node.op == 'call_function']
    assert [t for t in targets if t.startswith('gaussiansr.')] == [
        'gaussiansr.splat_prepare.default', 'gaussiansr.splat_query.default', 'gaussiansr.splat_forward.default']
    torch.testing.assert_close(program.module()(feat, sigma, rho, opacity, coords),
                               Splat()(feat, sigma, rho, opacity, coords), rtol=0, atol=0)
