"""Install gaussiansr_plugin. ``GAUSSIANSR_EXT=1`` also compiles the splat CUDA op (else it is built on first use)."""
import importlib.util
import os
from os import path as osp

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: pip's editable install runs `setup.py develop`, which installs no .pth
    editable_wheel = None

ROOT = osp.dirname(osp.abspath(__file__))
# run at interpreter start-up: a lazy alias that lets a plain `import basicsr` work (see gaussiansr_basicsr_compat.py)
COMPAT_PTH = ('gaussiansr_basicsr_compat.pth',
              'import gaussiansr_basicsr_compat; gaussiansr_basicsr_compat.install()\n')


def write_compat_pth(folder: str) -> str:
    path = osp.join(folder, COMPAT_PTH[0])
    with open(path, 'w') as f:
        f.write(COMPAT_PTH[1])
    return path


class BuildPyWithPth(build_py):
    """build_py that also puts the .pth at the top of the wheel (site-packages); editable installs: below."""

    def _writes_pth(self) -> bool:
        return not getattr(self, 'editable_mode', False)

    def run(self) -> None:
        super().run()
        if self._writes_pth():
            write_compat_pth(self.build_lib)

    def get_outputs(self, include_bytecode: bool = True) -> list:
        pth = [osp.join(self.build_lib, COMPAT_PTH[0])] if self._writes_pth() else []
        return super().get_outputs(include_bytecode) + pth


if editable_wheel is not None:

    class EditableWheelWithPth(editable_wheel):
        """An editable install (PEP 660) maps the packages to this checkout; the .pth must be in the wheel itself.
        ``unpacked_wheel`` is the folder setuptools (>= 64) zips into the editable wheel."""

        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            write_compat_pth(str(unpacked_wheel))
            return outputs


def read_version() -> str:
    scope = {}
    with open(osp.join(ROOT, 'gaussiansr_plugin', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements() -> list:
    with open(osp.join(ROOT, 'requirements.txt')) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def get_ext_modules() -> tuple:
    """The CUDA extension when GAUSSIANSR_EXT=1, else nothing (a plain install stays pure Python)."""
    if os.environ.get('GAUSSIANSR_EXT') != '1':
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    spec = importlib.util.spec_from_file_location('_splat_build', osp.join(ROOT, 'gaussiansr_plugin', 'ops', 'splat',
                                                                           'build.py'))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    params = build.get_build_parameters()
    sources = [osp.relpath(s, ROOT) for s in build.get_sources()]
    ext = CUDAExtension(
        name=f'gaussiansr_plugin.ops.splat.{build.EXT_NAME}',
        sources=sources,
        extra_compile_args={'cxx': params['extra_cflags'], 'nvcc': params['extra_cuda_cflags']})
    return [ext], {'build_ext': BuildExtension}


ext_modules, cmdclass = get_ext_modules()
cmdclass['build_py'] = BuildPyWithPth
if editable_wheel is not None:
    cmdclass['editable_wheel'] = EditableWheelWithPth

setup(
    name='gaussiansr_plugin',
    version=read_version(),
    description='GaussianSR (arbitrary-scale SR with 2D Gaussian splatting) as a BasicSR plugin',
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('options', 'tests', 'scripts', 'experiments', 'results', 'docs')),
    py_modules=['gaussiansr_basicsr_compat'],
    package_data={'gaussiansr_plugin': ['ops/splat/csrc/*', 'weights/*', 'configs/*']},
    include_package_data=True,
    install_requires=read_requirements(),
    entry_points={
        'basicsr.plugins': ['gaussiansr = gaussiansr_plugin'],
        'console_scripts': [
            'basicsr=gaussiansr_plugin.cli.basicsr_cli:main',
            'gaussiansr=gaussiansr_plugin.cli.gaussiansr_cli:main',
        ]
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
