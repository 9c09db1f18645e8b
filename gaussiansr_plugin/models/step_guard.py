"""The device side of the training step's non-finite guard: the step's flags and losses as one device tensor, and
the optimizer step and EMA update that skip on the device.

A step's verdict needs its flags on the host, and reading them is a device sync. With an optimizer that can skip a
step on the device (a fused Adam: ``found_inf``, as AMP's GradScaler uses it), the steps run without that sync and
the host reads the queued verdicts together, every few steps (``GaussianSRModel._settle_steps``).
"""
from typing import List, Tuple

import torch


def step_stats(losses: List[torch.Tensor], grads_finite: torch.Tensor, distributed: bool) -> torch.Tensor:
    """[each loss, loss non-finite, gradient non-finite] of one step as one float32 device tensor: the losses averaged
    over the ranks and the flags summed (one all-reduce), so every rank reaches the same verdict."""
    values = torch.stack([loss.detach().float() for loss in losses])
    bad = torch.stack([(~torch.isfinite(values)).any(), ~grads_finite]).float()
    stats = torch.cat([values, bad])
    if distributed:
        torch.distributed.all_reduce(stats)
        stats[:len(values)] /= torch.distributed.get_world_size()
    return stats


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours a ``found_inf`` device flag: a fused PyTorch optimizer whose groups are
    all still fused (a training state saved by an unfused one brings its groups' ``fused: False`` back on resume)."""
    return (bool(getattr(optimizer, '_step_supports_amp_scaling', False))
            and all(group.get('fused') for group in optimizer.param_groups))


def step_unless(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """``optimizer.step()``, a no-op on the device where ``bad`` (a float32 0-d tensor) is 1: weights, moments and
    step counts stay as they were."""
    optimizer.found_inf = bad
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf


@torch.no_grad()
def ema_update_unless(ema: torch.nn.Module, net: torch.nn.Module, decay: float, bad: torch.Tensor) -> None:
    """BasicSR's EMA of the parameters (ema = decay * ema + (1 - decay) * net), left unchanged where ``bad`` is 1."""
    keep = torch.where(bad > 0, torch.ones_like(bad), torch.full_like(bad, decay))
    targets = dict(ema.named_parameters())
    pairs: List[Tuple[torch.Tensor, torch.Tensor]] = [(targets[name], p) for name, p in net.named_parameters()]
    averaged = [t for t, _ in pairs]
    torch._foreach_mul_(averaged, keep)
    torch._foreach_add_(averaged, torch._foreach_mul([p for _, p in pairs], 1 - keep))
