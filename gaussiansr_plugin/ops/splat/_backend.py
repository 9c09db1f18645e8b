"""Lazy loader of the splat CUDA extension: the prebuilt module, else a just-in-time build (cached on disk).

Nothing here runs at import. ``load_ext()`` tries once per process and caches its answer, failure included:
``GAUSSIANSR_JIT=0`` turns the JIT build off; ``GAUSSIANSR_CACHE`` moves its build folder (default
``~/.cache/gaussiansr``).
"""
import functools
import importlib
import os
import sys
import time
import warnings
from os import path as osp
from types import ModuleType
from typing import Optional, Tuple

import torch

from .build import EXT_NAME, get_build_parameters, get_sources


def build_directory() -> str:
    """Folder of the JIT build, one per Python / torch / CUDA version (created on demand)."""
    root = os.environ.get('GAUSSIANSR_CACHE') or osp.join(osp.expanduser('~'), '.cache', 'gaussiansr')
    tag = f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}-cuda{torch.version.cuda}'
    return osp.join(root, 'splat_ext', tag.replace('+', '_'))


def _jit_blocker() -> Optional[str]:
    """Why a JIT build cannot be tried here, or None when it can."""
    if os.environ.get('GAUSSIANSR_JIT') == '0':
        return 'GAUSSIANSR_JIT=0'
    if not torch.cuda.is_available():
        return 'CUDA is not available at runtime'
    from torch.utils.cpp_extension import CUDA_HOME
    if CUDA_HOME is None:
        return 'no CUDA toolkit (nvcc / CUDA_HOME) was found'
    return None


# A build takes minutes; a lock file older than this was left by a build whose process was killed (torch's lock has
# no owner to check and would be waited on forever).
STALE_LOCK_S = 600


def wait_for_build_lock(directory: str, stale_after: float = STALE_LOCK_S, poll: float = 1.0) -> None:
    """Wait while another process builds in ``directory`` (its ``lock`` file exists); remove the lock once it is
    ``stale_after`` seconds old, so that a killed build does not hang every later process."""
    lock = osp.join(directory, 'lock')
    warned = False
    while osp.exists(lock):
        try:
            age = time.time() - os.path.getmtime(lock)
        except FileNotFoundError:  # released meanwhile
            return
        if age > stale_after:
            warnings.warn(f'removing the stale build lock {lock} ({age:.0f} s old: its build was interrupted)')
            try:
                os.remove(lock)
            except FileNotFoundError:
                pass
            return
        if not warned:
            warnings.warn(f'waiting for another process to build the splat extension (lock file {lock})')
            warned = True
        time.sleep(poll)


def _jit_load() -> ModuleType:
    """Compile (or reuse the cached build of) the extension with ``torch.utils.cpp_extension.load``."""
    from torch.utils.cpp_extension import load
    directory = build_directory()
    os.makedirs(directory, exist_ok=True)
    wait_for_build_lock(directory)
    return load(name=EXT_NAME, sources=get_sources(), build_directory=directory, **get_build_parameters())


# what function.py calls: a module built from older sources lacks some, and is rebuilt instead
ENTRY_POINTS = ('channels_per_thread', 'forward', 'prepare', 'query', 'backward')


def _prebuilt() -> ModuleType:
    """The module built at install time (``pip install`` with a CUDA toolkit), if it has every entry point."""
    module = importlib.import_module(f'{__package__}.{EXT_NAME}')
    missing = [name for name in ENTRY_POINTS if not hasattr(module, name)]
    if missing:
        raise ImportError(f'the prebuilt module is older than its sources (no {", ".join(missing)}); '
                          'reinstall the package to rebuild it')
    return module


@functools.lru_cache(maxsize=None)
def load_ext() -> Tuple[Optional[ModuleType], Optional[ImportError]]:
    """Load the extension once per process.

    Returns:
        tuple: ``(module, None)`` on success, else ``(None, ImportError)`` whose message carries the reasons of
        both routes (prebuilt module and JIT build) and whose ``__cause__`` is the last underlying error.
    """
    try:
        return _prebuilt(), None
    except ImportError as err:
        prebuilt_error = err
    blocker = _jit_blocker()
    if blocker is not None:
        error = ImportError(f'splat CUDA extension unavailable: prebuilt module: {prebuilt_error}; '
                            f'JIT build not tried: {blocker}')
        error.__cause__ = prebuilt_error
        return None, error
    try:
        return _jit_load(), None
    except Exception as err:  # a compiler or linker failure surfaces as RuntimeError, OSError or ImportError
        error = ImportError(f'splat CUDA extension unavailable: prebuilt module: {prebuilt_error}; '
                            f'JIT build in {build_directory()} failed: {err}')
        error.__cause__ = err
        return None, error
