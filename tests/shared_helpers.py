"""Helpers shared by several test modules (tests/ is put on sys.path by tests/conftest.py)."""
from typing import Callable

import torch

from gaussiansr_plugin.cli import gaussiansr_cli
from gaussiansr_plugin.cli.setup_errors import reported_as_user_errors


def cli(*args) -> int:
    """``gaussiansr ARGS`` in-process; the exit code (0 when ``main`` returns)."""
    try:
        gaussiansr_cli.main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


def as_setup_step(fn: Callable) -> Callable:
    """``fn`` run as the ``basicsr`` launcher runs BasicSR's set-up: its mistakes raised as one-line UserErrors."""

    def step(*args, **kwargs):
        with reported_as_user_errors():
            return fn(*args, **kwargs)

    return step


def messages(err: str) -> str:
    """stderr without the progress bar: its ``error:`` and ``warning:`` lines (the bar redraws with carriage
    returns)."""
    lines = [line.strip() for line in err.replace('\r', '\n').splitlines()]
    return ''.join(line + '\n' for line in lines if line.startswith(('error:', 'warning:')))


def model_opt(net_opt: dict, tmp_path, name: str = 'unit', **train) -> dict:
    """A parsed-options dict that ``basicsr.models.build_model`` turns into a CPU GaussianSRModel in training mode;
    ``train`` entries are added to (or override) its ``train`` section."""
    return {
        'name': name, 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'dist': False, 'is_train': True, 'rank': 0,
        'network_g': net_opt,
        'path': {'pretrain_network_g': None, 'models': str(tmp_path), 'training_states': str(tmp_path)},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10],
                  'gamma': 0.5}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train},
    }


def splat_inputs(b=1, c=3, h=5, w=7, q=20, dtype=torch.float64, seed=0, requires_grad=False) -> tuple:
    """Random valid (feat, sigma, rho, opacity, coords) of the splat op; coords cover [-1.1, 1.1] so some windows leave the image."""
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    sigma = 0.4 + 1.2 * torch.rand(b, 2, h, w, generator=gen, dtype=dtype)
    rho = 1.6 * torch.rand(b, 1, h, w, generator=gen, dtype=dtype) - 0.8
    opacity = torch.rand(b, 1, h, w, generator=gen, dtype=dtype)
    coords = 2.2 * torch.rand(b, q, 2, generator=gen, dtype=dtype) - 1.1
    leaves = [t.requires_grad_(requires_grad) for t in (feat, sigma, rho, opacity)]
    return (*leaves, coords)
