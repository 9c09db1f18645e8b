"""Option-key checks: a misspelt key in a yml becomes one clear ``ValueError`` instead of being ignored.

BasicSR hands every dataset its whole option dict and every arch ``**network_g``; a typo (``scale_maxx``) is
silently ignored by a dataset and surfaces as Python's ``TypeError: unexpected keyword argument`` from an arch.
These helpers name the unknown keys, suggest the closest valid one and list the valid keys.
"""
import difflib
import functools
import inspect
import math
from typing import Callable, Collection, Iterable, List, Mapping

# Keys BasicSR itself puts into or reads from a dataset's options: parse_options (phase, scale, dataroot_*),
# build_dataset (name, type), create_train_val_dataloader (dataset_enlarge_ratio, batch_size_per_gpu),
# build_dataloader (num_worker_per_gpu, pin_memory, persistent_workers, prefetch_mode, num_prefetch_queue),
# the CUDA prefetcher (pin_memory), and the keys its own datasets share (io_backend, meta_info_file,
# filename_tmpl; use_shuffle of older BasicSR ymls).
BASICSR_DATASET_KEYS = frozenset({
    'name', 'type', 'phase', 'scale', 'io_backend', 'meta_info_file', 'filename_tmpl', 'batch_size_per_gpu',
    'num_worker_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'use_shuffle',
    'num_prefetch_queue'
})
DATAROOT_PREFIX = 'dataroot_'


def describe_unknown(unknown: Iterable[str], allowed: Collection[str]) -> str:
    """``'scale_maxx' (did you mean 'scale_max'?), 'foo'`` for a list of unknown keys."""
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
        parts.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ''))
    return ', '.join(parts)


def unknown_keys(opt: Mapping, allowed: Collection[str], prefixes: Iterable[str] = ()) -> List[str]:
    """Keys of ``opt`` neither in ``allowed`` nor starting with one of ``prefixes``, in their order."""
    prefixes = tuple(prefixes)
    return [k for k in opt if k not in allowed and not (prefixes and str(k).startswith(prefixes))]


def check_keys(opt: Mapping, allowed: Collection[str], owner: str, prefixes: Iterable[str] = ()) -> None:
    """Raise a ``ValueError`` naming every unknown key of ``opt`` and listing the valid ones.

    Args:
        opt (Mapping): The options given.
        allowed (Collection[str]): Valid keys.
        owner (str): Who reads them, for the message (e.g. ``ArbitraryScaleImageDataset 'DIV2K'``).
        prefixes (Iterable[str]): Also valid: any key starting with one of these (e.g. ``dataroot_``).
    """
    unknown = unknown_keys(opt, allowed, prefixes)
    if unknown:
        valid = sorted(allowed) + [f'{p}*' for p in prefixes]
        raise ValueError(f'{owner}: unknown option(s) {describe_unknown(unknown, allowed)}; '
                         f'valid: {", ".join(valid)}')


def dataset_owner(opt: Mapping, cls_name: str) -> str:
    """``ArbitraryScaleImageDataset 'DIV2K' (phase train)``, for messages about a dataset's options."""
    name = f" '{opt['name']}'" if opt.get('name') else ''
    phase = f" (phase {opt['phase']})" if opt.get('phase') else ''
    return f'{cls_name}{name}{phase}'


def is_int_at_least(value, minimum: int) -> bool:
    """Whether an option value is an int >= ``minimum`` (YAML's ``true`` is a bool, not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value) -> bool:
    """Whether an option value is a finite int or float (not a bool, not a string such as YAML's ``1e-4``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int_option(name: str, value, minimum: int, optional: bool = True) -> None:
    """Raise a ``ValueError`` naming option ``name`` unless ``value`` is an int >= ``minimum`` (or None if
    ``optional``): a negative chunk or tile would otherwise return garbage or fail deep inside PyTorch."""
    if not (is_int_at_least(value, minimum) or (optional and value is None)):
        raise ValueError(f'{name} must be an int >= {minimum}{" (or null)" if optional else ""}, got {value!r}')


def keyword_names(fn: Callable) -> List[str]:
    """Names ``fn`` accepts as keyword arguments (``self`` and ``*args``/``**kwargs`` left out)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != 'self']


def strict_kwargs(init: Callable) -> Callable:
    """Decorate an ``__init__`` so that unknown keyword arguments raise a ``ValueError`` that lists the valid ones
    (Python would raise ``TypeError: unexpected keyword argument``, naming neither the class nor the options)."""
    allowed = keyword_names(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        check_keys(kwargs, allowed, type(self).__name__)
        return init(self, *args, **kwargs)

    return wrapped
