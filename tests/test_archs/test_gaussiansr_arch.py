import copy
import math
import os
import subprocess
import sys

import pytest
import torch

from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import make_cell, make_coord, output_size
from gaussiansr_plugin.archs.tiling import tile_plan


@ARCH_REGISTRY.register()
class _TestConvEncoder(torch.nn.Module):
    """A user's own registered encoder: [B, 3, h, w] -> [B, C, h, w], no ``num_feat_out`` attribute."""

    def __init__(self, num_feat=12):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, num_feat, 3, 1, 1)

    def forward(self, x):
        return self.conv(x)


def _queries(b, size, q=None):
    coord = make_coord(size)
    q = q or coord.shape[0]
    idx = torch.randperm(coord.shape[0])[:q]
    return coord[idx][None].expand(b, -1, -1), make_cell(q, size)[None].expand(b, -1, -1)


def test_make_coord_gives_the_pixel_centres():
    for h, w in ((1, 1), (3, 7), (128, 96), (1000, 3)):
        grid = make_coord((h, w), flatten=False, dtype=torch.float64)
        assert grid[:, 0, 0].tolist() == [-1 + (2 * k + 1) / h for k in range(h)]
        assert grid[0, :, 1].tolist() == [-1 + (2 * k + 1) / w for k in range(w)]
        assert torch.allclose(make_coord((h, w)).double(), grid.reshape(-1, 2), rtol=0, atol=1.2e-7)


def test_registered_with_paper_defaults():
    assert 'GaussianSR' in ARCH_REGISTRY
    net = ARCH_REGISTRY.get('GaussianSR')()
    n_params = sum(p.numel() for p in net.parameters())
    print(f'EDSR-baseline GaussianSR parameters: {n_params / 1e6:.3f}M (LIIF ~1.57M, official 1.84M)')
    assert 1.2e6 < n_params < 1.84e6
    assert net.num_gaussian_channels == 8 and net.bank.raw.shape == (100, 4) and net.radius == 3


@pytest.mark.parametrize('scale', [2.0, 2.5, 3.7, 4.0])
def test_forward_and_upsample_shapes(tiny_net_opt, scale):
    net = build_network(tiny_net_opt)
    lq = torch.rand(2, 3, 12, 10)
    size = output_size(lq.shape[-2:], scale)
    coord, cell = _queries(2, size, q=50)
    assert net(lq, coord, cell).shape == (2, 50, 3)
    net.eval()
    with torch.no_grad():
        out = net.upsample(lq, size, chunk_size=37)
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_eval_is_deterministic_and_batch_independent(tiny_net_opt):
    net = build_network(tiny_net_opt).eval()
    lq = torch.rand(3, 3, 9, 11)
    with torch.no_grad():
        a = net.upsample(lq, (25, 30))
        b = net.upsample(lq, (25, 30))
        alone = net.upsample(lq[1:2], (25, 30))
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:2], alone, rtol=0, atol=1e-5)


def test_training_selection_is_stochastic_per_pixel(tiny_net_opt):
    net = build_network(tiny_net_opt).train()
    feat = net.encode(torch.rand(1, 3, 8, 8))
    k1, k2 = net.gaussians(feat), net.gaussians(feat)
    assert k1.shape == (1, 4, 8, 8)
    assert not torch.equal(k1, k2)
    net.eval()
    assert torch.equal(net.gaussians(feat), net.gaussians(feat))


def test_kernel_parameters_are_constrained(tiny_net_opt):
    net = build_network(dict(tiny_net_opt, sigma_range=[0.4, 1.2]))
    with torch.no_grad():
        net.bank.raw.normal_(0, 20)
    bank = net.bank()
    assert (bank[:, :2] >= 0.4).all() and (bank[:, :2] <= 1.2).all()
    assert (bank[:, 2].abs() < 1).all()
    assert ((bank[:, 3] >= 0) & (bank[:, 3] <= 1)).all()


def test_gradients_reach_every_parameter(tiny_net_opt):
    net = build_network(tiny_net_opt).train()
    coord, cell = _queries(2, (30, 30), q=200)
    net(torch.rand(2, 3, 12, 12), coord, cell).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize('ng, has_head', [(0, False), (8, True), (16, True)])
def test_ablation_switches(tiny_net_opt, ng, has_head):
    net = build_network(dict(tiny_net_opt, num_gaussian_channels=ng))
    assert hasattr(net, 'head') == has_head
    coord, cell = _queries(1, (20, 20), q=30)
    assert net(torch.rand(1, 3, 8, 8), coord, cell).shape == (1, 30, 3)


@pytest.mark.parametrize('opts', [dict(residual='none'), dict(gaussian_norm='density'), dict(radius=1),
                                  dict(eval_selection='soft'), dict(gumbel_hard=False)])
def test_option_variants_run(tiny_net_opt, opts):
    net = build_network(dict(tiny_net_opt, **opts))
    coord, cell = _queries(1, (20, 20), q=30)
    net(torch.rand(1, 3, 8, 8), coord, cell).mean().backward()
    net.eval()
    with torch.no_grad():
        assert net.upsample(torch.rand(1, 3, 8, 8), (20, 20)).shape == (1, 3, 20, 20)


@pytest.mark.parametrize('encoder', [
    dict(type='edsr', num_feat=16, num_block=2),
    dict(type='rdn', num_feat=8, growth=8, num_block=2, num_layer=2),
    dict(type='swinir', embed_dim=12, depths=[1], num_heads=[2], window_size=4, img_size=8),
    dict(type='_TestConvEncoder', num_feat=12),
])
def test_each_encoder_builds_and_runs(tiny_net_opt, encoder):
    net = build_network(dict(tiny_net_opt, encoder=encoder))
    lq = torch.rand(1, 3, 10, 9)
    coord, cell = _queries(1, (23, 21), q=40)
    assert net(lq, coord, cell).shape == (1, 40, 3)


def test_full_size_encoders_match_papers():
    rdn = ARCH_REGISTRY.get('GaussianSR')(encoder=dict(type='rdn')).encoder
    edsr = ARCH_REGISTRY.get('GaussianSR')(encoder=dict(type='edsr')).encoder
    assert len(rdn.blocks) == 16 and len(rdn.blocks[0].layers) == 8 and rdn.num_feat_out == 64
    assert len(edsr.body) == 32 and edsr.num_feat_out == 256


@pytest.mark.parametrize('res_scale', [1.0, 0.1])
def test_edsr_encoder_adds_its_residuals_in_place_like_basicsr(res_scale):
    """The in-place residual blocks give BasicSR's blocks' outputs and gradients, bit for bit."""
    from gaussiansr_plugin.archs.encoders import EDSREncoder
    torch.manual_seed(0)
    enc = EDSREncoder(num_feat=8, num_block=3, res_scale=res_scale)
    x = torch.rand(2, 3, 12, 10)

    def basicsr_forward(t):
        head = enc.conv_first(t)
        return enc.conv_after_body(enc.body(head)) + head

    runs = []
    for forward in (enc, basicsr_forward):
        enc.zero_grad()
        out = forward(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        runs.append((out.detach(), [p.grad.clone() for p in enc.parameters()]))
    (out, grads), (expected, expected_grads) = runs
    assert torch.equal(out, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_encoder_pretrain_path(tmp_path, tiny_net_opt):
    src = build_network(tiny_net_opt)
    path = tmp_path / 'enc.pth'
    torch.save({'params': src.state_dict()}, path)
    enc = dict(tiny_net_opt['encoder'], pretrain_path=str(path))
    net = build_network(dict(tiny_net_opt, encoder=enc))
    torch.testing.assert_close(net.encoder.conv_first.weight, src.encoder.conv_first.weight)
    bad = dict(tiny_net_opt['encoder'], num_feat=8, pretrain_path=str(path))
    with pytest.raises(ValueError, match='does not fit the encoder'):
        build_network(dict(tiny_net_opt, encoder=bad))


@pytest.mark.parametrize('bad', [dict(encoder=dict(type='nope')), dict(num_gaussian_channels=99),
                                 dict(gaussian_norm='x'), dict(radius=9), dict(sigma_range=[1.0, 0.5])])
def test_bad_options_raise(tiny_net_opt, bad):
    with pytest.raises(ValueError):
        build_network(dict(copy.deepcopy(tiny_net_opt), **bad))


def test_tiled_upsample_matches_untiled(tiny_net_opt):
    net = build_network(tiny_net_opt).eval()
    # odd LR sizes: no HR centre falls exactly on an LR pixel border, where float noise could flip the nearest
    # LR pixel between the tiled and untiled coordinate arithmetic
    lq = torch.rand(1, 3, 31, 27)
    with torch.no_grad():
        full = net.upsample(lq, (77, 67))
        tiled = net.upsample(lq, (77, 67), tile=8, tile_overlap=12)
    # 12 LR pixels of context cover the receptive field (encoder 4 + head 1 + splat radius 3 + bicubic 2):
    # only float noise remains
    torch.testing.assert_close(tiled, full, rtol=0, atol=1e-4)


def test_a_large_image_is_tiled_with_its_whole_context(tiny_net_opt, monkeypatch):
    """Past auto_tile_side² LR pixels, upsample (and the progress bar's count) takes tiles with the exact context:
    the untiled result up to float noise."""
    import gaussiansr_plugin.archs.gaussiansr_arch as arch
    from gaussiansr_plugin.inference.progress import count_chunks
    net = build_network(dict(tiny_net_opt, gabor_bands=2, kernel_refine=True, head_input='all')).eval()
    assert net.context_radius == 4 + 1 + 1 + 3  # encoder convs, head 3x3, Gabor amplitudes 3x3, splat radius
    lq = torch.rand(1, 3, 31, 27)
    plans = []
    monkeypatch.setattr(arch, 'tile_plan', lambda *args: plans.append(args) or tile_plan(*args))
    with torch.no_grad():
        net.auto_tile_side = None
        full = net.upsample(lq, (77, 67))
        net.auto_tile_side = 12
        tiled = net.upsample(lq, (77, 67))
    assert plans == [((31, 27), (77, 67), 12, net.context_radius)]
    torch.testing.assert_close(tiled, full, rtol=0, atol=1e-4)
    assert count_chunks(net, lq, (77, 67), 1000, None, 16) == (9, 9)  # 3 x 3 tiles, one chunk each
    assert net.tiling(31, 27, 8, 5) == (8, 5)  # an explicit tile is the caller's
    net.encoder = torch.nn.Identity()  # not convolutional: no bound on its context, whole images
    assert net.context_radius is None and net.tiling(31, 27, None, 16) == (None, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_tiles_bound_the_memory_of_a_large_image():
    net = build_network(dict(type='GaussianSR', gabor_bands=16, kernel_refine=True, head_input='all')).cuda().eval()
    lq = torch.rand(1, 3, 1024, 1024, device='cuda')
    peaks = []
    for side in (None, 512):
        net.auto_tile_side = side
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            out = net.upsample(lq, (2048, 2048))
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
        del out
    assert peaks[1] < 0.7 * peaks[0], peaks


LARGE = """
import torch, gaussiansr_plugin
from basicsr.archs import build_network
torch.set_num_threads(2)
net = build_network(dict(type='GaussianSR', encoder=dict(type='edsr-baseline', num_feat=8, num_block=1),
                         bank_size=16, mlp_hidden=[16])).eval()
lq = torch.rand(1, 3, {h}, {h})


def status_kib(key):
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(key + ':'))


open('/proc/self/clear_refs', 'w').write('5')  # the peak so far is the import's: count from here
resident_kib = status_kib('VmRSS')
with torch.no_grad():
    out = net.upsample(lq, ({H}, {H}), chunk_size=65536)
assert out.shape == (1, 3, {H}, {H}) and torch.isfinite(out).all()
print((status_kib('VmHWM') - resident_kib) // 1024)
"""


@pytest.mark.skipif(not os.access('/proc/self/clear_refs', os.W_OK), reason='resets the peak resident size in /proc')
@pytest.mark.parametrize('h, H', [(256, 1024), (64, 2048)])
def test_large_outputs_have_bounded_memory(h, H):
    out = subprocess.run([sys.executable, '-c', LARGE.format(h=h, H=H)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    added_mib = int(out.stdout.split()[-1])
    # the peak over what the process held before the call: the output, 3*H*H*4 bytes (48 MiB at 2048^2), and one
    # chunk's working memory
    assert added_mib < 768, added_mib


def _plain_query(net, lq, coord, cell):
    """The method written out step by step (two separate bicubic samples, no chunks): the unoptimised reference."""
    from gaussiansr_plugin.archs.bicubic_sampling import sample_bicubic
    from gaussiansr_plugin.ops.splat import splat_reference
    feat = net.encode(lq)
    k = net.gaussians(feat)
    ng, (h, w) = net.num_gaussian_channels, feat.shape[-2:]
    opacity = k[:, 3:4]
    if net.gaussian_norm == 'density':  # the bivariate normal density's factor 1 / (2 pi sy sx sqrt(1 - rho^2))
        opacity = opacity / (2 * math.pi * k[:, 0:1] * k[:, 1:2] * torch.sqrt(1 - k[:, 2:3] ** 2))
    splatted = splat_reference(feat[:, :ng], k[:, :2], k[:, 2:3], opacity, coord, net.radius)
    lr_size = torch.tensor([h, w], device=coord.device)
    pos = (coord + 1) * lr_size / 2 - 0.5
    rel = 2 * (pos - torch.floor(pos + 0.5))
    x = torch.cat([splatted, sample_bicubic(feat[:, ng:], coord), rel, cell * lr_size], dim=-1)
    out = net.decoder(x)
    if net.residual:
        out = out + sample_bicubic((lq - 0.5) / 0.5, coord)
    return out * 0.5 + 0.5


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA GPU'))])
@pytest.mark.parametrize('residual', ['bicubic', 'none'])
@pytest.mark.parametrize('chunk_size', [100, 10])
def test_chunked_upsample_equals_plain_query(tiny_net_opt, residual, chunk_size, device):
    """The whole-image path (maps prepared once, one grid_sample for both bicubic streams, chunks) equals the
    method written out step by step on the same queries, on the CPU and on a GPU."""
    net = build_network(dict(tiny_net_opt, residual=residual)).to(device).eval()
    lq = torch.rand(2, 3, 11, 13, device=device)
    size = (27, 31)
    with torch.no_grad():
        fast = net.upsample(lq, size, chunk_size=chunk_size)
        coord = make_coord(size, device=device)[None].expand(2, -1, -1)
        cell = make_cell(coord.shape[1], size, device=device)[None].expand(2, -1, -1)
        plain = _plain_query(net, lq, coord, cell).view(2, *size, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_tiles_stream_into_a_given_output(tiny_net_opt):
    net = build_network(tiny_net_opt).eval()
    lq = torch.rand(1, 3, 21, 17)
    with torch.no_grad():
        expected = net.upsample(lq, (53, 43), tile=8, tile_overlap=12)
        out = torch.full((1, 3, 53, 43), float('nan'), dtype=torch.float64)
        result = net.upsample(lq, (53, 43), tile=8, tile_overlap=12, out=out)
        assert result is out and torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), expected, rtol=0, atol=1e-6)
        untiled = net.upsample(lq, (53, 43), out=torch.empty(1, 3, 53, 43))
        torch.testing.assert_close(untiled, net.upsample(lq, (53, 43)), rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match='out must have shape'):
            net.upsample(lq, (53, 43), out=torch.empty(1, 3, 50, 43))


def test_splat_backend_option(tiny_net_opt, monkeypatch):
    coord, cell = _queries(1, (20, 20), q=30)
    lq = torch.rand(1, 3, 8, 8)
    ref = build_network(dict(tiny_net_opt, splat_backend='reference')).eval()
    auto = build_network(dict(tiny_net_opt, splat_backend='auto')).eval()
    auto.load_state_dict(ref.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(auto(lq, coord, cell), ref(lq, coord, cell))  # CPU tensors: both the reference
    forced = build_network(dict(tiny_net_opt, splat_backend='cuda')).eval()
    with pytest.raises((RuntimeError, ValueError), match='cuda'):
        forced(lq, coord, cell)  # CPU tensors cannot take the CUDA kernel: a clear error, not a silent fallback
    with pytest.raises(ValueError, match='splat_backend'):
        build_network(dict(tiny_net_opt, splat_backend='gpu'))


def test_chunks_fit_free_gpu_memory(monkeypatch):
    """On a GPU short of free memory, chunks shrink so that those of the whole batch fit in half of it; never below
    MIN_CHUNK_SIZE, never above the chunk asked for; the CPU and graph capture keep the chunk as asked."""
    import types
    from gaussiansr_plugin.archs.gaussiansr_arch import MIN_CHUNK_SIZE
    net = ARCH_REGISTRY.get('GaussianSR')()
    assert net.fit_chunk_size(torch.rand(1, 3, 4, 4), 131072) == 131072
    lq = types.SimpleNamespace(is_cuda=True, shape=(2, 3, 64, 64), device='cuda:0')
    monkeypatch.setattr(torch.cuda, 'is_current_stream_capturing', lambda: False)
    free = 2 * 2 * net.query_bytes() * 10000  # room for 10000 queries of a 2-image batch in half the free memory
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (free, 10 * free))
    assert net.fit_chunk_size(lq, 131072) == 10000
    assert net.fit_chunk_size(lq, 5000) == 5000
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (1000, 10 ** 9))
    assert net.fit_chunk_size(lq, 131072) == MIN_CHUNK_SIZE and net.fit_chunk_size(lq, 100) == 100
    monkeypatch.setattr(torch.cuda, 'is_current_stream_capturing', lambda: True)
    assert net.fit_chunk_size(lq, 131072) == 131072


def _decode_peak_bytes(net, queries: int) -> int:
    """Peak CPU memory of decoding ``queries`` queries of one image, as the torch profiler reports it."""
    from gaussiansr_plugin.inference.profiling import peak_memory_mb
    lq = torch.rand(1, 3, 12, 12)
    coord, cell = torch.rand(1, queries, 2) * 2 - 1, torch.full((1, queries, 2), 0.05)
    with torch.no_grad():
        feat = net.encode(lq)
        params, side = net._splat_params(lq, feat, net.gaussians(feat)), net._bicubic_stream(lq, feat)
        return round(peak_memory_mb(lambda: net._query(feat, params, side, coord, cell), torch.device('cpu')) * 2**20)


@pytest.mark.parametrize('options', [{}, {'residual': 'none', 'mlp_hidden': [64, 128]},
                                     {'offset_encoding': 'periodic'}])
def test_query_bytes_bounds_the_measured_decode_peak(options):
    """Without splatting (so without the CPU reference's window, which memory_plan adds) the derived bytes per query
    bound the measured peak of decoding a chunk, and are not a loose guess (within 10%)."""
    net = ARCH_REGISTRY.get('GaussianSR')(num_gaussian_channels=0, **options).eval()
    queries = 5000
    measured, derived = _decode_peak_bytes(net, queries), queries * net.query_bytes()
    assert 0.9 * derived <= measured <= derived + 64, (measured, derived)  # + a few scalars per chunk
    assert net.query_bytes(torch.bfloat16) < net.query_bytes() == net.query_bytes(torch.float32)


@pytest.mark.parametrize('options', [{}, {'gabor_bands': 4}, {'kernel_refine': True, 'residual': 'none'}])
def test_cpu_chunk_estimate_bounds_the_measured_decode_peak(options):
    """memory_plan's chunk estimate (decoder + the reference splat's window) bounds the measured CPU peak."""
    from gaussiansr_plugin.inference import memory_plan
    net = ARCH_REGISTRY.get('GaussianSR')(**options).eval()
    queries = 5000
    assert _decode_peak_bytes(net, queries) <= memory_plan.query_bytes(net, queries)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_fitted_chunks_render_the_same_image_on_cuda(tiny_net_opt, monkeypatch):
    net = build_network(tiny_net_opt).cuda().eval()
    lq = torch.rand(2, 3, 40, 40, device='cuda')
    with torch.no_grad():
        roomy = net.upsample(lq, (150, 150), chunk_size=30000)
        free = 2 * 2 * net.query_bytes() * 5000
        monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (free, 10 ** 11))
        assert net.fit_chunk_size(lq, 30000) == 5000
        torch.testing.assert_close(net.upsample(lq, (150, 150), chunk_size=30000), roomy, rtol=0, atol=1e-5)


def test_cell_clip_decodes_larger_scales_with_the_cell_of_the_clip_scale():
    torch.manual_seed(0)
    tiny = dict(encoder={'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, mlp_hidden=[16], bank_size=4,
                num_gaussian_channels=4)
    clipped = ARCH_REGISTRY.get('GaussianSR')(**tiny).eval()
    free = ARCH_REGISTRY.get('GaussianSR')(**tiny, cell_clip=None).eval()
    free.load_state_dict(clipped.state_dict())
    lq = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(clipped.upsample(lq, (21, 21)), free.upsample(lq, (21, 21)))  # x3.5: untouched
        coord, cell = _queries(1, (48, 48))  # x8
        x4_cell = torch.full_like(cell, 2 / 24)
        assert torch.equal(clipped(lq, coord, cell), free(lq, coord, x4_cell))
        assert not torch.equal(clipped(lq, coord, cell), free(lq, coord, cell))
    assert clipped.output_options()['cell_clip'] == 4.0 and free.output_options()['cell_clip'] is None


@pytest.mark.parametrize('bad', [0.5, -1, float('nan'), 'x', True])
def test_bad_cell_clip(bad):
    with pytest.raises(ValueError, match='cell_clip must be a scale >= 1 or null'):
        ARCH_REGISTRY.get('GaussianSR')(cell_clip=bad)


def test_periodic_offsets_decode_continuously_across_lr_cell_borders():
    """Two queries 2e-4 LR pixels apart on either side of an LR cell border: the linear offset jumps from +1 to -1
    between them and so does the decoded colour; its periodic encoding does not (same weights otherwise)."""
    tiny = dict(encoder={'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, mlp_hidden=[16], bank_size=4,
                num_gaussian_channels=4)
    lq = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([2.5 - 1e-4, 2.5 + 1e-4])  # LR-pixel positions; the border of pixels 2 and 3 is at 2.5
    coord = torch.stack([torch.full_like(x, 2.2), x], dim=-1)[None]
    coord = 2 * (coord + 0.5) / 6 - 1
    cell = torch.full((1, 2, 2), 2 / 24)
    steps = {}
    for encoding in ('linear', 'periodic'):
        torch.manual_seed(0)
        net = ARCH_REGISTRY.get('GaussianSR')(**tiny, offset_encoding=encoding).eval()
        with torch.no_grad():
            out = net(lq, coord, cell)[0]
        steps[encoding] = (out[0] - out[1]).abs().max().item()
    assert steps['periodic'] < 1e-3 < 10 * steps['periodic'] < steps['linear']
    assert net.decoder.layers[0].in_features == 8 + 4 + 2  # features, (sin, cos) of the offset (y, x), cell


def test_bad_offset_encoding():
    with pytest.raises(ValueError, match="offset_encoding must be one of \\('linear', 'periodic'\\), got 'sine'"):
        ARCH_REGISTRY.get('GaussianSR')(offset_encoding='sine')


def test_convolutions_run_channels_last_and_keep_it_through_loading(tiny_net_opt):
    """NHWC saves cuDNN two transposes per convolution; the weights keep the layout when moved or loaded from an NCHW
    state dict, and the features equal those of the NCHW network."""
    net = build_network(tiny_net_opt).eval()
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nchw = {k: v.contiguous() for k, v in net.state_dict().items()}
    fresh = build_network(tiny_net_opt).to(torch.float64).to(torch.float32)
    fresh.load_state_dict(nchw)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in fresh.modules() if isinstance(m, torch.nn.Conv2d))
    lq = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        feat = net.encode(lq)
        plain = copy.deepcopy(net.encoder).to(memory_format=torch.contiguous_format)(net.normalize(lq))
    assert feat.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(feat, plain, rtol=1e-5, atol=1e-5)
    registered = build_network(dict(tiny_net_opt, encoder={'type': '_TestConvEncoder'}))  # may view NCHW: left so
    assert registered.encoder.conv.weight.is_contiguous() and registered.encode(lq).is_contiguous()


def test_the_network_exports_with_torch_export(tiny_net_opt):
    """torch.export of the query path at test (the design of the training ymls: Gabor bands, refined kernels): the
    exported program gives the eager output."""
    net = build_network(dict(tiny_net_opt, gabor_bands=4, kernel_refine=True, head_input='all')).eval()
    lq = torch.rand(1, 3, 8, 8)
    coord, cell = (t[None] for t in (make_coord((16, 16)), make_cell(256, (16, 16))))
    program = torch.export.export(net, (lq, coord, cell))
    with torch.no_grad():
        assert torch.equal(program.module()(lq, coord, cell), net(lq, coord, cell))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_the_exported_network_keeps_the_splat_operators(tiny_net_opt):
    net = build_network(dict(tiny_net_opt, gabor_bands=4, kernel_refine=True, head_input='all')).cuda().eval()
    lq = torch.rand(1, 3, 8, 8, device='cuda')
    coord, cell = (t[None] for t in (make_coord((16, 16), device='cuda'), make_cell(256, (16, 16), device='cuda')))
    program = torch.export.export(net, (lq, coord, cell))
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert any(t.startswith('gaussiansr.splat_') for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(lq, coord, cell), net(lq, coord, cell), rtol=0, atol=1e-6)
