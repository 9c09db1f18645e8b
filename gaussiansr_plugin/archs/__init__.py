"""Import every `*_arch.py` module here so that its class registers (BasicSR's convention)."""
import importlib
from os import path as osp

from basicsr.utils import scandir

_folder = osp.dirname(osp.abspath(__file__))
_modules = [osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_arch.py')]
for _name in sorted(_modules):
    importlib.import_module(f'{__name__}.{_name}')
