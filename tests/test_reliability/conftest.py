"""Fixtures for the reliability tests."""
import logging

import pytest
import torch

from basicsr.utils import get_root_logger


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    @property
    def text(self):
        return '\n'.join(self.messages)


@pytest.fixture
def basicsr_log():
    """Messages logged to BasicSR's logger during the test (it does not propagate, so ``caplog`` misses them)."""
    logger = get_root_logger()
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(records)
    logger.setLevel(level)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_net_opt):
    """A tiny GaussianSR checkpoint as GaussianSRModel writes it (``params`` and ``network_g``); (path, net)."""
    from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
    torch.manual_seed(0)
    net = GaussianSR(**{k: v for k, v in tiny_net_opt.items() if k != 'type'}).eval()
    path = tmp_path / 'tiny.pth'
    torch.save({'params': net.state_dict(), 'network_g': tiny_net_opt, 'output_options': net.output_options()}, path)
    return str(path), net
