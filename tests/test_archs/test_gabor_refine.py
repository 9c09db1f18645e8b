"""Gabor textures splatted by the Gaussians, and the per-pixel kernel refinement."""
import math

import pytest
import torch

from gaussiansr_plugin.archs.gabor import GaborTexture
from gaussiansr_plugin.archs.sgs import GaussianBank, GaussianHead, refine_kernels
from gaussiansr_plugin.ops.splat import splat


def test_gabor_splat_equals_direct_sum_of_gabor_functions():
    """Splatting the demodulated bands and remodulating at the query gives sum_j w_j(p) a_j e^{i theta(p - c_j)}."""
    torch.manual_seed(0)
    h, w, q, bands = 5, 6, 40, 3
    gabor = GaborTexture(4, bands).double()
    feat = torch.randn(1, 4, h, w, dtype=torch.float64)
    sigma = 0.4 + torch.rand(1, 2, h, w, dtype=torch.float64)
    rho = 0.8 * torch.rand(1, 1, h, w, dtype=torch.float64) - 0.4
    opacity = torch.rand(1, 1, h, w, dtype=torch.float64)
    coord = torch.rand(1, q, 2, dtype=torch.float64) * 2 - 1
    pos = (coord + 1) * torch.tensor([h, w], dtype=torch.float64) / 2 - 0.5
    ours = gabor.remodulate(splat(gabor.demodulated(feat), sigma, rho, opacity, coord, radius=2), pos)

    weights = splat(torch.eye(h * w, dtype=torch.float64).view(1, h * w, h, w), sigma, rho, opacity, coord, 2)
    amp_re, amp_im = gabor.amplitude(feat).chunk(2, dim=1)
    amp = torch.complex(amp_re, amp_im).view(bands, h * w)  # [K, hw]
    centres = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij'), -1).view(-1, 2).double()
    delta = pos[0][:, None, :] - centres[None]  # [Q, hw, 2]
    theta = 2 * math.pi * delta @ gabor.freq.double().t()  # [Q, hw, K]
    direct = (weights[0][..., None] * amp.t()[None] * torch.exp(1j * theta)).sum(dim=1)  # [Q, K]
    expected = torch.cat([direct.real, direct.imag], dim=-1)
    assert torch.allclose(ours[0], expected, atol=1e-9)


def test_gabor_phase_is_exact_far_from_the_origin():
    gabor = GaborTexture(4, 8)
    pos = torch.tensor([[0.37, 0.81]], dtype=torch.float64)  # the caller's precision is the caller's
    shifted = gabor._phase(pos + 4096.0) - gabor._phase(torch.tensor([[4096.0, 4096.0]]))
    assert torch.allclose(torch.remainder(shifted, 2 * math.pi), gabor._phase(pos), atol=1e-5)


def test_refinement_starts_at_the_bank_and_stays_valid():
    head = GaussianHead(8, bank_size=9, hidden=16, refine=True)
    out = head(torch.randn(2, 8, 5, 5))
    assert out.shape == (2, 13, 5, 5)
    assert torch.count_nonzero(out[:, 9:]) == 0  # zero offsets: the bank's kernels, unchanged
    bank = GaussianBank(9, (0.3, 1.5))
    kernels = bank()[torch.randint(0, 9, (2, 5, 5))].permute(0, 3, 1, 2)
    assert torch.allclose(refine_kernels(kernels, torch.zeros(2, 4, 5, 5), (0.3, 1.5)), kernels, atol=1e-5)
    moved = refine_kernels(kernels, 50 * torch.randn(2, 4, 5, 5), (0.3, 1.5))
    assert ((moved[:, :2] >= 0.3) & (moved[:, :2] <= 1.5)).all()
    assert (moved[:, 2].abs() <= 0.99).all() and ((moved[:, 3] >= 0) & (moved[:, 3] <= 1)).all()


@pytest.mark.parametrize('options', [dict(gabor_bands=4), dict(kernel_refine=True, head_input='all'),
                                     dict(num_gaussian_channels=0, gabor_bands=4, head_input='all')])
def test_new_options_train_and_render(tiny_net_opt, options):
    from basicsr.utils.registry import ARCH_REGISTRY
    opt = dict(tiny_net_opt, **options)
    net = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    lq, coord = torch.rand(2, 3, 8, 8), torch.rand(2, 30, 2) * 2 - 1
    net(lq, coord, torch.full((2, 30, 2), 0.1)).abs().mean().backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if n.startswith(('gabor', 'head', 'bank')))
    net.eval()
    with torch.no_grad():
        assert net.upsample(lq, (20, 28)).shape == (2, 3, 20, 28)


def test_gaussian_head_input_needs_splatted_channels(tiny_net_opt):
    from basicsr.utils.registry import ARCH_REGISTRY
    opt = dict(tiny_net_opt, num_gaussian_channels=0, gabor_bands=4)
    with pytest.raises(ValueError, match='head_input'):
        ARCH_REGISTRY.get(opt.pop('type'))(**opt)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gabor_bands_through_the_cuda_kernel_match_the_reference(tiny_net_opt):
    """The splat of 8 + 2K channels (features and Gabor bands) on the CUDA kernel equals the reference op."""
    from basicsr.utils.registry import ARCH_REGISTRY
    from gaussiansr_plugin.ops.splat._backend import load_ext
    if load_ext()[0] is None:
        pytest.skip('the splat CUDA extension is not built')
    opt = dict(tiny_net_opt, gabor_bands=16, kernel_refine=True, head_input='all')
    net = ARCH_REGISTRY.get(opt.pop('type'))(**opt).cuda()
    lq, coord = torch.rand(2, 3, 12, 12, device='cuda'), torch.rand(2, 300, 2, device='cuda') * 2 - 1
    cell = torch.full((2, 300, 2), 0.05, device='cuda')
    outputs, grads = [], []
    for backend in ('cuda', 'reference'):
        net.splat_backend = backend
        net.zero_grad()
        torch.manual_seed(0)  # the same Gumbel draw for both
        out = net(lq, coord, cell)
        out.square().mean().backward()
        outputs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_at_test_the_refined_kernel_skips_the_round_trip(tiny_net_opt):
    """With argmax selection the refined kernel is computed from the chosen kernel's unconstrained parameters: the
    same kernels as select_kernels + refine_kernels (their constrain-unconstrain round trip), within rounding."""
    from basicsr.utils.registry import ARCH_REGISTRY
    from gaussiansr_plugin.archs.sgs import select_kernels
    opt = dict(tiny_net_opt, kernel_refine=True, head_input='all')
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get(opt.pop('type'))(**opt).eval()
    with torch.no_grad():
        net.bank.raw.add_(torch.randn_like(net.bank.raw))  # a bank that has moved
        last = net.head.body[-1]
        last.weight[net.head.bank_size:].normal_(0, 0.5)  # offsets of a trained refinement
        feat = net.encode(torch.rand(2, 3, 7, 9))
        out = net._head_out(feat)
        k = net.head.bank_size
        round_trip = refine_kernels(select_kernels(out[:, :k], net.bank(), False), out[:, k:],
                                    (net.bank.sigma_low, net.bank.sigma_high))
        direct = net.gaussians(feat)
    assert out[:, k:].abs().max() > 0.1 and torch.allclose(direct, round_trip, rtol=1e-5, atol=1e-6)
