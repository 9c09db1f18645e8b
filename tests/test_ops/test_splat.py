"""CPU tests of the splat op: the reference against a naive float64 loop, gradients, edge cases, dispatcher."""
import math
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

import gaussiansr_plugin.ops.splat as splat_pkg
from gaussiansr_plugin.ops.splat import splat, splat_reference
from gaussiansr_plugin.ops.splat.reference import query_centres
from shared_helpers import splat_inputs


def naive_splat(feat, sigma, rho, opacity, coords, radius):
    """The contract written out with Python loops in float64 (independent of the reference)."""
    b_size, channels, h, w = feat.shape
    out = torch.zeros(b_size, coords.shape[1], channels, dtype=torch.float64)
    for b in range(b_size):
        for q, (y, x) in enumerate(coords[b].tolist()):
            py, px = (y + 1) * h / 2 - 0.5, (x + 1) * w / 2 - 0.5
            cy, cx = math.floor(py + 0.5), math.floor(px + 0.5)
            for i in range(max(cy - radius, 0), min(cy + radius, h - 1) + 1):
                for j in range(max(cx - radius, 0), min(cx + radius, w - 1) + 1):
                    sy, sx, r = sigma[b, 0, i, j].item(), sigma[b, 1, i, j].item(), rho[b, 0, i, j].item()
                    cov = torch.tensor([[sy * sy, r * sy * sx], [r * sy * sx, sx * sx]], dtype=torch.float64)
                    d = torch.tensor([py - i, px - j], dtype=torch.float64)
                    weight = opacity[b, 0, i, j].item() * math.exp(-0.5 * (d @ torch.linalg.inv(cov) @ d).item())
                    out[b, q] += weight * feat[b, :, i, j].double()
    return out


@pytest.mark.parametrize('b,c,h,w,radius', [(1, 1, 5, 7, 1), (2, 3, 6, 4, 2), (1, 64, 4, 4, 3), (1, 2, 9, 3, 4),
                                            (1, 4, 3, 11, 5), (2, 2, 5, 5, 0)])
def test_reference_matches_naive_formula(b, c, h, w, radius):
    inputs = splat_inputs(b, c, h, w, q=12, seed=b * 100 + c + radius)
    torch.testing.assert_close(splat_reference(*inputs, radius), naive_splat(*inputs, radius), rtol=1e-12, atol=1e-12)


def test_borders_and_corners_tie_to_pixel_below_right():
    h, w = 4, 6
    feat, sigma, rho, opacity, _ = splat_inputs(1, 2, h, w)
    ys = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)  # multiples of 2/h: pixel borders, ends
    xs = torch.tensor([-1.0, -1 + 2 / 3, 1 / 3, 1.0], dtype=torch.float64)  # multiples of 2/w (exact in binary)
    coords = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).reshape(1, -1, 2)
    _, _, cy, cx = query_centres(coords, h, w)
    assert cy[0, ::4].tolist() == [0, 1, 2, 3, 4] and cx[0, :4].tolist() == [0, 2, 4, 6]
    for radius in (0, 1, 3):
        out = splat_reference(feat, sigma, rho, opacity, coords, radius)
        torch.testing.assert_close(out, naive_splat(feat, sigma, rho, opacity, coords, radius), rtol=1e-12, atol=1e-12)
    out = splat_reference(feat, sigma, rho, opacity, coords, 0)
    assert out[0, -4:].abs().max() == 0 and out[0, 3::4].abs().max() == 0  # y = 1 or x = 1: centre outside
    ny, nx, r = -0.5 / sigma[0, 0, 1, 0], -0.5 / sigma[0, 1, 1, 0], rho[0, 0, 1, 0]  # (y, x) = (-0.5, -1): pixel (1, 0)
    weight = opacity[0, 0, 1, 0] * torch.exp(-0.5 * (ny * ny - 2 * r * ny * nx + nx * nx) / (1 - r * r))
    torch.testing.assert_close(out[0, 4], weight * feat[0, :, 1, 0])


@pytest.mark.gradcheck
@pytest.mark.parametrize('radius', [1, 2])
def test_reference_gradcheck(radius):
    inputs = splat_inputs(1, 2, 4, 5, q=6, seed=radius, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: splat_reference(*t, inputs[-1], radius), inputs[:4])


@pytest.mark.gradcheck
def test_dispatcher_gradcheck_and_no_coords_grad():
    feat, sigma, rho, opacity, coords = splat_inputs(2, 1, 3, 4, q=5, seed=3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: splat(*t, coords, 1), (feat, sigma, rho, opacity))
    coords.requires_grad_(True)
    splat(feat, sigma, rho, opacity, coords, 1).sum().backward()
    assert coords.grad is None and feat.grad is not None


def test_batch_items_are_independent():
    inputs = splat_inputs(3, 4, 5, 6, q=15, seed=7)
    out = splat(*inputs, radius=2)
    for b in range(3):
        torch.testing.assert_close(out[b:b + 1], splat(*(t[b:b + 1] for t in inputs), radius=2))


def test_zero_queries_give_empty_output_and_zero_grads():
    feat, sigma, rho, opacity, _ = splat_inputs(2, 3, 4, 4, requires_grad=True)
    out = splat(feat, sigma, rho, opacity, torch.zeros(2, 0, 2, dtype=torch.float64), 3)
    assert out.shape == (2, 0, 3)
    grads = torch.autograd.grad(out.sum(), (feat, sigma, rho, opacity))
    assert all(g.shape == t.shape and g.abs().max() == 0 for g, t in zip(grads, (feat, sigma, rho, opacity)))


def test_chunking_does_not_change_the_result():
    inputs = splat_inputs(2, 5, 6, 7, q=50, seed=11, requires_grad=True)
    big = splat_reference(*inputs, 3)
    small = splat_reference(*inputs, 3, chunk_size=7)
    torch.testing.assert_close(small, big, rtol=1e-14, atol=1e-14)
    g = torch.randn_like(big)
    for a, b in zip(torch.autograd.grad(big, inputs[:4], g), torch.autograd.grad(small, inputs[:4], g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype):
    inputs = [t.to(dtype) for t in splat_inputs(1, 8, 6, 6, q=30, seed=5)]
    out = splat(*inputs, radius=3)
    assert out.dtype == dtype
    ref = splat(*(t.float() for t in inputs), radius=3)
    tol = 1e-2 if dtype == torch.float16 else 2e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())


BAD_INPUTS = [
    ('feat', torch.zeros(2, 3, 4), ValueError, r'feat must have shape \[B, C, h, w\].*\(2, 3, 4\)'),
    ('feat', torch.zeros(1, 0, 4, 5), ValueError, 'C, h, w >= 1'),
    ('sigma', torch.ones(1, 1, 4, 5), ValueError, r'sigma must have shape \(1, 2, 4, 5\).*\(1, 1, 4, 5\)'),
    ('rho', torch.zeros(2, 1, 4, 5), ValueError, r'rho must have shape \(1, 1, 4, 5\)'),
    ('opacity', torch.ones(1, 1, 5, 4), ValueError, r'opacity must have shape \(1, 1, 4, 5\)'),
    ('coords', torch.zeros(1, 7, 3), ValueError, r'coords must have shape \(1, Q, 2\), got \(1, 7, 3\)'),
    ('coords', torch.zeros(7, 2), ValueError, 'coords must have shape'),
    ('coords', torch.zeros(1, 7, 2, dtype=torch.long), TypeError, 'coords must be a floating-point'),
    ('feat', [[0.0]], TypeError, 'feat must be a torch.Tensor'),
    ('radius', 8, ValueError, r'radius must be in \[0, 7\], got 8'),
    ('radius', -1, ValueError, 'radius must be in'),
    ('radius', 2.0, TypeError, 'radius must be an int'),
    ('radius', True, TypeError, 'radius must be an int'),
]


@pytest.mark.parametrize('name,value,error,match', BAD_INPUTS)
def test_validation_errors_name_the_argument(name, value, error, match):
    args = dict(zip(('feat', 'sigma', 'rho', 'opacity', 'coords'), splat_inputs(1, 3, 4, 5, dtype=torch.float32)))
    args['radius'] = 3
    args[name] = value
    with pytest.raises(error, match=match):
        splat(**args)


def test_env_reference_never_loads_the_extension(monkeypatch):
    monkeypatch.setattr(splat_pkg, 'load_ext', lambda: pytest.fail('load_ext called'))
    monkeypatch.setenv('GAUSSIANSR_SPLAT', 'reference')
    inputs = splat_inputs(1, 2, 4, 4, dtype=torch.float32)
    torch.testing.assert_close(splat(*inputs, radius=2), splat_reference(*inputs, 2))
    monkeypatch.setenv('GAUSSIANSR_SPLAT', 'REFERENCE ')
    assert splat_pkg.resolve_backend() == 'reference'
    assert splat_pkg.resolve_backend('cuda') == 'cuda'  # an explicit backend wins over the environment


def test_bad_backend_names_raise(monkeypatch):
    inputs = splat_inputs(1, 2, 4, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match='backend must be one of'):
        splat(*inputs, backend='torch')
    monkeypatch.setenv('GAUSSIANSR_SPLAT', 'gpu')
    with pytest.raises(ValueError, match="GAUSSIANSR_SPLAT must be one of.*'gpu'"):
        splat(*inputs)


def test_forced_cuda_without_extension_raises_chained(monkeypatch):
    cause = ImportError('no compiler here')
    monkeypatch.setattr(splat_pkg, 'load_ext', lambda: (None, cause))
    with pytest.raises(RuntimeError, match='CUDA extension is unavailable') as info:
        splat(*splat_inputs(1, 2, 4, 4, dtype=torch.float32), backend='cuda')
    assert info.value.__cause__ is cause


def test_backend_choice_traces_under_compile(monkeypatch):
    """torch.compile(fullgraph=True) of the model's query must not trace the extension's import: whether it loaded is
    a constant to the compiler."""
    import importlib

    def loader_that_imports():
        importlib.import_module('json')
        return None, ImportError('no extension')

    monkeypatch.setattr(splat_pkg, 'load_ext', loader_that_imports)
    compiled = torch.compile(lambda x: x + float(splat_pkg.extension_loaded()), fullgraph=True, backend='eager')
    assert compiled(torch.ones(2)).tolist() == [1.0, 1.0]


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the real loader on a machine without a GPU')
def test_forced_cuda_without_gpu_raises_clear_error(monkeypatch):
    monkeypatch.setenv('GAUSSIANSR_SPLAT', 'cuda')
    with pytest.raises((RuntimeError, ValueError), match='CUDA') as info:
        splat(*splat_inputs(1, 2, 4, 4, dtype=torch.float32))
    assert info.type is ValueError or 'CUDA is not available' in str(info.value.__cause__)


def test_auto_fallback_warns_once(monkeypatch):
    import basicsr.utils
    messages = []
    logger = type('Logger', (), {'warning': lambda self, msg: messages.append(msg)})()
    monkeypatch.setattr(basicsr.utils, 'get_root_logger', lambda: logger)
    monkeypatch.setattr(splat_pkg, 'load_ext', lambda: (None, ImportError('nvcc missing')))
    splat_pkg._warn_fallback.cache_clear()
    splat_pkg._warn_fallback()
    splat_pkg._warn_fallback()
    splat_pkg._warn_fallback.cache_clear()
    assert len(messages) == 1 and 'nvcc missing' in messages[0] and 'reference' in messages[0]


def test_cpu_inputs_neither_load_the_extension_nor_warn(monkeypatch):
    """On the CPU there is no CUDA build to fall back from: the reference runs, silently (README, Install)."""

    def unexpected():
        raise AssertionError('called for CPU inputs')

    monkeypatch.delenv('GAUSSIANSR_SPLAT', raising=False)
    monkeypatch.setattr(splat_pkg, 'load_ext', unexpected)
    monkeypatch.setattr(splat_pkg, '_warn_fallback', unexpected)
    inputs = splat_inputs(1, 2, 4, 4, dtype=torch.float32)
    torch.testing.assert_close(splat(*inputs), splat(*inputs, backend='reference'))


def test_import_builds_nothing():
    code = ('import torch.utils.cpp_extension as ce\n'
            'def refuse(*args, **kwargs):\n'
            '    raise AssertionError("cpp_extension.load called at import")\n'
            'ce.load = refuse\n'
            'import sys, gaussiansr_plugin, gaussiansr_plugin.ops.splat as s\n'
            'from gaussiansr_plugin.ops.splat import _backend\n'
            'assert _backend.load_ext.cache_info().currsize == 0\n'
            'assert not any(m.endswith("gaussiansr_splat_ext") for m in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_splat_source_equals_splat_on_the_cpu():
    """SplatSource (one image's maps, any number of query chunks) gives ``splat``'s values, chunk by chunk."""
    feat, sigma, rho, opacity, coords = splat_inputs(b=2, c=5, h=6, w=7, q=40, dtype=torch.float32)
    source = splat_pkg.SplatSource(feat, sigma, rho, opacity, 2)
    chunks = torch.cat([source(c) for c in coords.split(15, dim=1)], dim=1)
    torch.testing.assert_close(chunks, splat(feat, sigma, rho, opacity, coords, 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match='coords must have shape'):
        source(coords[0])


def test_a_prebuilt_module_older_than_its_sources_is_not_used(monkeypatch):
    """A module built at install time from older sources lacks the newer entry points: load_ext must not take it
    (a JIT build from the current sources replaces it where one can run)."""
    import types
    from gaussiansr_plugin.ops.splat import _backend
    stale = types.ModuleType('stale')
    stale.forward = stale.backward = stale.channels_per_thread = object()
    monkeypatch.setitem(sys.modules, f'{_backend.__package__}.{_backend.EXT_NAME}', stale)
    with pytest.raises(ImportError, match=r'older than its sources \(no prepare, query\); reinstall'):
        _backend._prebuilt()


def test_a_build_lock_left_by_a_killed_build_is_removed(tmp_path):
    """torch's JIT build waits for its lock file forever; a build killed mid-way leaves it behind."""
    from gaussiansr_plugin.ops.splat._backend import wait_for_build_lock
    lock = tmp_path / 'lock'
    lock.touch()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match='stale build lock'):
        wait_for_build_lock(str(tmp_path))
    assert not lock.exists()
    wait_for_build_lock(str(tmp_path))  # no lock: returns at once


def test_a_build_in_progress_is_waited_for(tmp_path):
    from gaussiansr_plugin.ops.splat._backend import wait_for_build_lock
    lock = tmp_path / 'lock'
    lock.touch()
    threading.Timer(0.3, lock.unlink).start()  # the other process's build finishes
    start = time.time()
    with pytest.warns(UserWarning, match='waiting for another process'):
        wait_for_build_lock(str(tmp_path), stale_after=60, poll=0.05)
    assert 0.25 < time.time() - start < 5
    lock.touch()  # a build that never finishes is waited for until its lock is stale
    with pytest.warns(UserWarning):
        wait_for_build_lock(str(tmp_path), stale_after=0.3, poll=0.05)
    assert not lock.exists()
