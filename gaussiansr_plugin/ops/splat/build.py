"""Build flags of the splat CUDA extension: one source for the JIT loader and for setup.py.

setup.py loads this file with importlib (it must not import the package before it is built), so it
only uses the standard library.
"""
import os
from os import path as osp
from typing import Dict, List

EXT_NAME = 'gaussiansr_splat_ext'
_CSRC = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc')


def get_sources(csrc_dir: str = _CSRC) -> List[str]:
    """C++ and CUDA source files of the extension (absolute paths)."""
    return [osp.join(csrc_dir, 'splat.cpp'), osp.join(csrc_dir, 'splat_kernel.cu')]


def get_build_parameters() -> Dict[str, List[str]]:
    """Compiler flags shared by ``cpp_extension.load`` and setup.py's ``CUDAExtension``."""
    cuda_flags = ['-O3', '-lineinfo', '--expt-relaxed-constexpr']
    if os.environ.get('GAUSSIANSR_DEBUG_BUILD') == '1':
        cuda_flags = ['-O0', '-g', '-G']
    return {'extra_cflags': ['-O3'], 'extra_cuda_cflags': cuda_flags}
