"""``bank_balance``: the Switch-Transformer load-balancing term on the per-pixel kernel selection."""
import math

import pytest
import torch

from basicsr.archs import build_network
from gaussiansr_plugin.archs.sgs import balance_loss


def _peaked_logits(choice: torch.Tensor, k: int, c: float) -> torch.Tensor:
    """Logits [1, K, h, w] that are ``c`` at each pixel's chosen kernel (``choice`` [h, w]) and 0 elsewhere."""
    return c * torch.nn.functional.one_hot(choice, k).permute(2, 0, 1)[None].double()


def test_one_when_the_pixels_spread_evenly_and_k_when_they_collapse():
    k, c = 4, 3.0
    even = _peaked_logits(torch.arange(16).view(4, 4) % k, k, c)  # f_k = P_k = 1/K by symmetry
    assert balance_loss(even).item() == pytest.approx(1.0, abs=1e-6)
    collapsed = _peaked_logits(torch.zeros(4, 4, dtype=torch.long), k, c)  # f = (1, 0, ...), P_0 = e^c / (e^c + K - 1)
    assert balance_loss(collapsed).item() == pytest.approx(k * math.exp(c) / (math.exp(c) + k - 1), rel=1e-6)
    assert balance_loss(_peaked_logits(torch.zeros(4, 4, dtype=torch.long), k, 40.0)).item() == pytest.approx(k)


def test_matches_the_definition_on_random_logits():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 5, 6, dtype=torch.float64)
    probs = torch.softmax(logits, dim=1).mean(dim=(0, 2, 3))
    share = torch.bincount(logits.argmax(dim=1).flatten(), minlength=7).double() / logits[:, 0].numel()
    assert balance_loss(logits).item() == pytest.approx(7 * (share * probs).sum().item(), rel=1e-6)


def test_gradient_lowers_the_overused_kernel_and_reaches_the_classifier(tiny_net_opt):
    logits = _peaked_logits(torch.zeros(4, 4, dtype=torch.long), 4, 1.0).requires_grad_()
    balance_loss(logits).backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()  # descent moves pixels off kernel 0

    net = build_network(dict(tiny_net_opt, bank_balance=0.1)).train()
    net(torch.rand(2, 3, 8, 8), torch.rand(2, 30, 2) * 2 - 1, torch.full((2, 30, 2), 0.1))
    net.take_balance_loss().backward()
    assert net.head.body[0].weight.grad.abs().sum() > 0 and net.encoder.conv_first.weight.grad.abs().sum() > 0
    assert net.bank.raw.grad is None and net.decoder.layers[0].weight.grad is None  # only the selection is pushed


def test_off_leaves_outputs_and_gradients_bitwise_unchanged(tiny_net_opt):
    """The term is a side output: turned on, the forward (Gumbel draws included) and the L1 gradients are the same
    bits as with the option off; off, and in eval, nothing is computed or kept."""
    nets = [build_network(tiny_net_opt), build_network(dict(tiny_net_opt, bank_balance=0.5))]
    nets[1].load_state_dict(nets[0].state_dict())
    lq, coord, cell = torch.rand(2, 3, 8, 8), torch.rand(2, 30, 2) * 2 - 1, torch.full((2, 30, 2), 0.1)
    outputs, grads = [], []
    for net in nets:
        torch.manual_seed(0)
        out = net.train()(lq, coord, cell)
        out.abs().mean().backward()
        outputs.append(out)
        grads.append([p.grad for p in net.parameters()])
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert nets[0].take_balance_loss() is None
    assert nets[1].take_balance_loss().ndim == 0 and nets[1].take_balance_loss() is None  # handed over once
    with torch.no_grad():
        nets[1].eval()(lq, coord, cell)
    assert nets[1].take_balance_loss() is None
