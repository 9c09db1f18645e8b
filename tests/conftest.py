"""Shared fixtures: tiny GaussianSR configs that run fast on two CPU cores."""
import os

import pytest
import torch

import gaussiansr_plugin  # noqa: F401  (BasicSR compat alias + registration)

os.environ.setdefault('XDG_CACHE_HOME', os.path.join(os.path.dirname(__file__), '..', '.pytest_cache', 'xdg'))
torch.set_num_threads(2)

TINY_NET = dict(
    type='GaussianSR',
    encoder=dict(type='edsr-baseline', num_feat=16, num_block=1),
    num_gaussian_channels=8,
    bank_size=16,
    mlp_hidden=[32, 32],
)


@pytest.fixture
def tiny_net_opt():
    """Option dict (``network_g``) of a tiny GaussianSR."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_NET.items()}
