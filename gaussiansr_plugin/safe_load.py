"""The one way this package reads checkpoints: ``torch.load`` that never runs code from the file, and one loader of
network weights, with one-line errors.

Every checkpoint this package reads (``gaussiansr upscale --model``, ``path.pretrain_network_g``, resume states,
``encoder.pretrain_path``) goes through :func:`safe_torch_load`: ``weights_only=True`` refuses a pickle that
would import or call Python code (a crafted ``__reduce__``, a pickled class) before anything runs, whatever
torch's default is. Network weights then go through :func:`read_checkpoint` and :func:`load_weights`.
"""
import os
import pickle
import re
import warnings
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Tuple, Union

import torch
from torch import nn

from .errors import CheckpointError, first_line


def safe_torch_load(path: str,
                    map_location: Union[str, torch.device] = 'cpu',
                    safe_globals: Iterable[Any] = ()) -> Any:
    """Load ``path`` with ``weights_only=True`` (tensors, plain containers and ``safe_globals`` only).

    Args:
        path (str): The file.
        map_location (str | torch.device): Where tensors go. Default: 'cpu'.
        safe_globals (Iterable): Extra classes the file may hold (e.g. ``collections.Counter`` in BasicSR
            training states). Default: none.

    Raises:
        CheckpointError: Missing file, a pickle that references Python code, or not a PyTorch checkpoint.
    """
    if not os.path.exists(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint is not a file: {path}')
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(safe_globals)):
            warnings.simplefilter('ignore')  # e.g. torch's note on the pickle protocol
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r'GLOBAL (\S+)', str(exc))
        if found:
            raise CheckpointError(f'refusing to load {path}: it references Python code ({found.group(1)}) that '
                                  'unpickling could run; only tensors and plain containers are accepted') from exc
        reason = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', str(exc))
        detail = reason.group(1).strip() if reason else first_line(exc)
        raise CheckpointError(f'cannot load {path}: not a PyTorch checkpoint of tensors ({detail})') from exc
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CheckpointError(f'cannot load {path}: not a PyTorch checkpoint or a corrupt one '
                              f'({first_line(exc)})') from exc


def read_checkpoint(path: str, option: str = '') -> dict:
    """``safe_torch_load`` of a file that must hold a dict (weights, or entries holding them).

    Args:
        path (str): The file.
        option (str): The option that named the file (e.g. ``encoder.pretrain_path``), which starts every message.
            Default: ''.

    Raises:
        CheckpointError: Missing, unsafe or foreign file, or not a dict.
    """
    try:
        checkpoint = safe_torch_load(path)
    except CheckpointError as exc:
        if option:
            raise CheckpointError(f'{option}: {exc}') from exc
        raise
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{option} {path}'.lstrip() + f' holds a {type(checkpoint).__name__}, not network '
                              'weights')
    return checkpoint


def load_weights(net: nn.Module, state: Mapping, what: str, target: str, hint: str = '', strict: bool = True) -> None:
    """Load a state dict into ``net`` after the checks every checkpoint gets: DDP's ``module.`` stripped, every
    weight finite, and with ``strict`` an exact fit.

    Args:
        net (nn.Module): The bare network.
        state (Mapping): Its weights, as selected from the checkpoint.
        what (str): How messages name the checkpoint.
        target (str): How messages name the network (``the encoder``, ``the GaussianSR built from network_g``).
        hint (str): Appended to the message of a checkpoint that does not fit. Default: ''.
        strict (bool): Refuse missing, unexpected and reshaped keys. Default: True.

    Raises:
        CheckpointError: Non-finite weights, or (``strict``) weights that do not fit, naming the first keys.
    """
    state = strip_ddp_prefix(state)
    bad = non_finite_entries(state)
    if bad:
        raise CheckpointError(f'{what} holds non-finite weights (NaN or inf) in {bad}: a diverged or corrupt '
                              'checkpoint; use an earlier one')
    mismatch = describe_state_mismatch(net.state_dict(), state) if strict else ''
    if mismatch:
        raise CheckpointError(f'{what} does not fit {target}: {mismatch}{hint}')
    net.load_state_dict(state, strict=strict)


def describe_state_mismatch(expected: Mapping, state: Mapping, shown: int = 3) -> str:
    """``missing a, b (+2 more); unexpected c; shape (checkpoint vs network) d [3] vs [4]``, or '' if they fit."""

    def names(keys):
        return ', '.join(keys[:shown]) + (f' (+{len(keys) - shown} more)' if len(keys) > shown else '')

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f'{k} {list(state[k].shape)} vs {list(v.shape)}' for k, v in expected.items()
        if k in state and hasattr(state[k], 'shape') and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f'missing {names(missing)}')
    if unexpected:
        problems.append(f'unexpected {names(unexpected)}')
    if shapes:
        problems.append(f'shape (checkpoint vs network) {names(shapes)}')
    return '; '.join(problems)


def strip_ddp_prefix(state: Mapping) -> 'OrderedDict':
    """``state`` with DDP's ``module.`` removed from the start of its (string) keys, in the same order."""
    return OrderedDict((k[len('module.'):] if isinstance(k, str) and k.startswith('module.') else k, v)
                       for k, v in state.items())


PARAM_KEYS = ('params_ema', 'params', 'state_dict')  # where checkpoints keep network weights, preferred first


def select_weights(checkpoint: Mapping) -> Tuple[Mapping, str]:
    """The weights of a checkpoint dict and their key: the first of ``PARAM_KEYS`` holding a dict (BasicSR's
    EMA weights first), else the checkpoint itself with key ''."""
    key = next((k for k in PARAM_KEYS if isinstance(checkpoint.get(k), dict)), '')
    return (checkpoint[key] if key else checkpoint), key


def non_finite_entries(state: Mapping, shown: int = 3) -> str:
    """``decoder.0.weight, bank.raw (+2 more)``: the floating-point tensors of ``state`` holding NaN or inf, or ''.
    A NaN weight would otherwise turn every output black without an error."""
    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return ', '.join(map(str, bad[:shown])) + (f' (+{len(bad) - shown} more)' if len(bad) > shown else '')


def checkpoint_network_options(network_g: Mapping) -> dict:
    """``network_g`` as a checkpoint records it: plain containers, without ``encoder.pretrain_path`` (the weights
    are in the checkpoint)."""

    def plain(value):  # BasicSR parses ymls into OrderedDicts
        return {k: plain(v) for k, v in value.items()} if isinstance(value, Mapping) else value

    options = plain(network_g)
    if isinstance(options.get('encoder'), dict):
        options['encoder'].pop('pretrain_path', None)
    return options
