"""Fixtures for the reliability tests."""
import logging

import pytest

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
