"""Helpers shared by several test modules (tests/ is put on sys.path by tests/conftest.py)."""
from typing import Callable, Dict, List, Optional

import torch

from gaussiansr_plugin.archs.gaussian_util import make_cell, make_coord
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
    """Random valid (feat, sigma, rho, opacity, coords) of the splat op; coords cover [-1.1, 1.1] so some windows
    leave the image."""
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    sigma = 0.4 + 1.2 * torch.rand(b, 2, h, w, generator=gen, dtype=dtype)
    rho = 1.6 * torch.rand(b, 1, h, w, generator=gen, dtype=dtype) - 0.8
    opacity = torch.rand(b, 1, h, w, generator=gen, dtype=dtype)
    coords = 2.2 * torch.rand(b, q, 2, generator=gen, dtype=dtype) - 1.1
    leaves = [t.requires_grad_(requires_grad) for t in (feat, sigma, rho, opacity)]
    return (*leaves, coords)


def query_batch(seed: int = 0, gt_value: Optional[float] = None, b: int = 2, q: int = 32,
                size=(24, 24)) -> Dict[str, torch.Tensor]:
    """A training batch of ``b`` random 8x8 LR images with ``q`` queries of a ``size`` output each; ``gt_value`` goes
    into the first target (e.g. NaN for a non-finite loss)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, size[0] * size[1], (b, q), generator=gen)
    gt_q = torch.rand(b, q, 3, generator=gen)
    if gt_value is not None:
        gt_q[0, 0, 0] = gt_value
    return {'lq': torch.rand(b, 3, 8, 8, generator=gen), 'coord': make_coord(size)[idx],
            'cell': make_cell(q, size)[None].repeat(b, 1, 1), 'gt_q': gt_q}


def train_without_sync(model, batches: List[Dict[str, torch.Tensor]], first_iter: int) -> None:
    """Training steps on ``batches`` (pinned) under CUDA's sync debug mode, which raises on any host sync."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for it, batch in enumerate(batches, start=first_iter):
            model.feed_data(batch)
            model.optimize_parameters(it)
    finally:
        torch.cuda.set_sync_debug_mode('default')
