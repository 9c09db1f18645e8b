"""Make BasicSR 1.4.2 importable on current torchvision.

BasicSR 1.4.2 (the last PyPI release) imports ``torchvision.transforms.functional_tensor``, a module
torchvision renamed to ``_functional_tensor`` in 0.17. Aliasing the old name before BasicSR is first
imported is enough; nothing else in BasicSR depends on it.
"""
import importlib
import sys

_OLD = 'torchvision.transforms.functional_tensor'


def install_basicsr_compat() -> None:
    """Alias the removed torchvision module under its old name (idempotent)."""
    if _OLD in sys.modules:
        return
    try:
        importlib.import_module(_OLD)
    except ImportError:
        sys.modules[_OLD] = importlib.import_module('torchvision.transforms._functional_tensor')
