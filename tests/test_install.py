"""What the install gives: a plain ``import basicsr`` after installing the plugin, and no CUDA library needed to
import any module of the package."""
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PTH = 'gaussiansr_basicsr_compat.pth'


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=300)


def test_editable_install_makes_plain_import_basicsr_work(tmp_path):
    # build_editable is the PEP 660 hook that `pip install --no-build-isolation -e .` calls
    build = subprocess.run([sys.executable, '-c', f'from setuptools import build_meta; '
                            f'build_meta.build_editable({str(tmp_path)!r})'], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(tmp_path.glob('*.whl'))
    assert len(wheels) == 1
    site_dir = tmp_path / 'site'
    site_dir.mkdir()
    (site_dir / PTH).write_bytes(zipfile.ZipFile(wheels[0]).read(PTH))
    # site.addsitedir runs the .pth as interpreter start-up does for site-packages
    proc = _python(f'import site, sys\nsite.addsitedir({str(site_dir)!r})\n'
                   "early = {'torch', 'torchvision', 'gaussiansr_plugin'} & set(sys.modules)\n"
                   "assert not early, f'the .pth imported {early} at start-up'\n"
                   'import basicsr\n'
                   "assert 'gaussiansr_plugin' not in sys.modules\n"
                   'import torchvision.transforms.functional_tensor as old, torchvision.transforms._functional_tensor '
                   'as new\n'
                   'assert old is new\n', PYTHONPATH=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_module_needs_cuda_libraries_to_import():
    """Every module of the package imports with the Python packages that exist only beside a CUDA build of torch
    (triton, nvidia.*, cuda.*) hidden, without initialising CUDA, loading the splat extension or its compiler."""
    code = '''
import importlib, importlib.abc, pkgutil, sys
import torch

class HideCudaOnlyPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('triton', 'nvidia', 'cuda') or name == 'torch.utils.cpp_extension':
            raise ModuleNotFoundError(f'{name} is hidden (CPU-only torch)')

sys.meta_path.insert(0, HideCudaOnlyPackages())
import gaussiansr_plugin
for module in pkgutil.walk_packages(gaussiansr_plugin.__path__, 'gaussiansr_plugin.'):
    importlib.import_module(module.name)
assert not torch.cuda.is_initialized()
assert not [m for m in sys.modules if 'splat_ext' in m]
'''
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
