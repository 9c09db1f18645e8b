"""Let BasicSR 1.4.2 import on current torchvision: ``torchvision.transforms.functional_tensor`` as an alias.

BasicSR 1.4.2 (the last PyPI release) imports ``torchvision.transforms.functional_tensor``, which torchvision renamed
to ``_functional_tensor`` in 0.17. ``install()`` appends to ``sys.meta_path`` a finder that answers for that one
name, and only when no other finder has it, with the renamed module. It imports nothing else, so it can run at
interpreter start-up: ``gaussiansr_basicsr_compat.pth``, installed beside this module by setup.py, calls it, which
makes a plain ``import basicsr`` work. ``import gaussiansr_plugin`` calls it too (for checkouts that are not
installed). This module is stand-alone (standard library only): the .pth must not import the plugin or torch.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

OLD_NAME = 'torchvision.transforms.functional_tensor'
NEW_NAME = 'torchvision.transforms._functional_tensor'


class FunctionalTensorAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``OLD_NAME`` as the already importable ``NEW_NAME`` module (the same module object)."""

    def find_spec(self, name, path=None, target=None):
        if name != OLD_NAME or importlib.util.find_spec(NEW_NAME) is None:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return importlib.import_module(NEW_NAME)

    def exec_module(self, module):
        """Nothing to run: ``create_module`` returned the imported module."""


def install() -> None:
    """Append the alias finder to ``sys.meta_path`` once; last, so a torchvision that has the old name wins."""
    if not any(isinstance(finder, FunctionalTensorAlias) for finder in sys.meta_path):
        sys.meta_path.append(FunctionalTensorAlias())
