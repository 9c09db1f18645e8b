"""Install gaussiansr_plugin. ``GAUSSIANSR_EXT=1`` also compiles the splat CUDA op (else it is built on first use)."""
import importlib.util
import os
from os import path as osp

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))


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

setup(
    name='gaussiansr_plugin',
    version=read_version(),
    description='GaussianSR (arbitrary-scale SR with 2D Gaussian splatting) as a BasicSR plugin',
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('options', 'tests', 'scripts', 'experiments', 'results', 'docs')),
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
