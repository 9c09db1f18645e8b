"""Atomic checkpoint writes, the RNG states a resumed run needs to continue bit-for-bit, and checkpoint look-ups."""
import os
import random
import re
from typing import Optional

import numpy as np
import torch

from ..atomic_files import write_atomic
from ..errors import CheckpointWriteError


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` through a temporary file in the same folder, then rename: a kill never leaves a partial file
    (``atomic_files.write_atomic``; stale temporary files of killed runs are removed on the next save).

    Raises:
        CheckpointWriteError: The file cannot be written; the previous file under ``path`` is intact.
    """
    try:
        write_atomic(path, lambda f: torch.save(obj, f))
    except OSError as exc:
        raise CheckpointWriteError(f'cannot write {path}: {exc.strerror or exc}; the earlier checkpoints are intact: '
                                   'free space (or fix the folder) and continue with --auto_resume') from exc


def get_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA RNG states, as types ``torch.load(weights_only=True)`` accepts."""
    version, keys, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        'python': [version, list(keys), gauss],
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned."""
    version, keys, gauss = state['python']
    random.setstate((version, tuple(keys), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda'][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def checkpoint_before(models_dir: str, iteration: int, net_label: str = 'net_g') -> Optional[str]:
    """The newest ``<net_label>_<iter>.pth`` in ``models_dir`` saved at an iteration below ``iteration``, or None."""
    if not os.path.isdir(models_dir):
        return None
    pattern = re.compile(rf'{re.escape(net_label)}_(\d+)\.pth')
    found = [(int(m.group(1)), name) for name in os.listdir(models_dir) for m in [pattern.fullmatch(name)] if m]
    found = [(it, name) for it, name in found if it < iteration]
    return os.path.join(models_dir, max(found)[1]) if found else None
