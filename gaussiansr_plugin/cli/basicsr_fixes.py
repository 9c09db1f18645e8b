"""Small fixes to BasicSR 1.4.2's entry points, applied by our launcher before it calls them.

- ``load_resume_state`` maps states to ``cuda`` unconditionally and looks for ``./experiments``
  instead of ``opt['path']['training_states']``: ours loads to the run's device, from the run's folder.
- ``init_dist`` hard-codes NCCL and ``rank % cuda.device_count()``: ours uses ``LOCAL_RANK`` and
  falls back to gloo when there is no GPU, so ``--launcher pytorch`` also works on CPUs.
- ``parse_options`` copies a top-level ``scale`` over every dataset: ours keeps a dataset's own ``scale``
  (test ymls mix x2, x3.5 and x12 sets).
- A resumed run restarts its epoch and its augmentation streams: ours continues the data exactly
  (``data/resumable_sampler.py``), and the model restores the RNG states saved in the training state.
- A mistake in the options (an unknown key, an impossible size, a checkpoint of another network) surfaces as a
  traceback from deep inside BasicSR: the steps before the first iteration (parsing the options, loading the
  resume state, building the datasets, loaders and the model) turn ``ValueError``, ``KeyError``, ``TypeError``,
  ``OSError`` and ``NotImplementedError`` into a ``UserError``, which the launcher prints as one line. Errors
  after training started keep their tracebacks.
"""
import functools
import os
from collections import Counter, OrderedDict, defaultdict
from os import path as osp
from typing import Callable

import torch
import torch.distributed as dist
import yaml

from basicsr.utils import scandir
from basicsr.utils.options import ordered_yaml
from ..data import resumable_sampler
from ..safe_load import safe_torch_load
from . import preflight
from ..errors import UserError, first_line

# exception types that, raised while the run is being set up, mean a mistake in the options or files
SETUP_ERRORS = (ValueError, KeyError, TypeError, OSError, NotImplementedError)


def describe(exc: BaseException) -> str:
    """One line for an exception raised while setting up a run (``KeyError('x')`` -> ``missing option 'x'``)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str) and ' ' not in exc.args[0]:
        return f'missing option {exc.args[0]!r}'
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        return str(exc.args[0])
    return first_line(exc)


def as_user_errors(fn: Callable, context: Callable[..., str]) -> Callable:
    """Wrap a set-up step: ``SETUP_ERRORS`` it raises become a ``UserError`` ``'<context>: <message>'``.

    Args:
        fn (Callable): The step (e.g. BasicSR's ``build_model``).
        context (Callable): Called with ``fn``'s arguments; returns what was being set up (e.g. a dataset name).
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SETUP_ERRORS as exc:
            message = describe(exc)
            where = context(*args, **kwargs)
            raise UserError(message if where.lower() in message.lower() else f'{where}: {message}') from exc

    return wrapped


def _dataset_context(dataset_opt, *args, **kwargs) -> str:
    name = dataset_opt.get('name') if isinstance(dataset_opt, dict) else None
    return f"dataset '{name}'" if name else 'dataset'


def _loader_context(dataset, dataset_opt, *args, **kwargs) -> str:
    return f"data loader of {_dataset_context(dataset_opt)}"


def _model_context(opt, *args, **kwargs) -> str:
    return f"cannot build {opt.get('model_type', 'the model')}"


def load_resume_state(opt: dict):
    """Return the resume state dict (or None), loaded onto the device the run trains on."""
    resume_state_path = opt['path'].get('resume_state')
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        if osp.isdir(state_dir):
            iters = [int(v.split('.state')[0]) for v in scandir(state_dir, suffix='.state', recursive=False)]
            if iters:
                resume_state_path = osp.join(state_dir, f'{max(iters)}.state')
                opt['path']['resume_state'] = resume_state_path
    if not resume_state_path:
        return None
    from basicsr.utils import check_resume
    if opt['num_gpu'] != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    resume_state = safe_torch_load(resume_state_path, map_location=device, safe_globals=[Counter, OrderedDict,
                                                                                         defaultdict])
    check_resume(opt, resume_state['iter'])
    opt['_resume_point'] = {'epoch': resume_state['epoch'], 'iter': resume_state['iter']}
    return resume_state


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """Initialise torch.distributed for ``--launcher pytorch`` (NCCL on GPUs, gloo on CPUs)."""
    if launcher != 'pytorch':
        from basicsr.utils.dist_util import init_dist as basicsr_init_dist
        basicsr_init_dist(launcher, backend, **kwargs)
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)


def keep_dataset_scales(parse_options):
    """Wrap BasicSR's ``parse_options`` so each dataset keeps its own ``scale`` if it has one."""

    def wrapped(root_path, is_train=True):
        opt, args = parse_options(root_path, is_train=is_train)
        with open(args.opt) as f:
            raw = yaml.load(f, Loader=ordered_yaml()[0])
        for phase, dataset_opt in (raw.get('datasets') or {}).items():
            if 'scale' in dataset_opt and phase in opt['datasets']:
                opt['datasets'][phase]['scale'] = dataset_opt['scale']
        return opt, args

    return wrapped


def apply() -> None:
    """Patch BasicSR's train/test modules in place (idempotent)."""
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options
    if getattr(basicsr.train, '_gaussiansr_fixed', False):
        return
    basicsr.train.load_resume_state = as_user_errors(load_resume_state, lambda *a, **k: 'resume state')
    basicsr.utils.options.init_dist = init_dist
    basicsr.train.EnlargedSampler = resumable_sampler.ResumableSampler
    basicsr.train.create_train_val_dataloader = as_user_errors(
        resumable_sampler.make_resumable(basicsr.train.create_train_val_dataloader),
        lambda *a, **k: 'datasets')
    for module in (basicsr.train, basicsr.test):
        module.parse_options = as_user_errors(
            preflight.checked(keep_dataset_scales(module.parse_options)), lambda *a, **k: 'options')
        module.build_dataset = as_user_errors(module.build_dataset, _dataset_context)
        module.build_dataloader = as_user_errors(module.build_dataloader, _loader_context)
        module.build_model = as_user_errors(module.build_model, _model_context)
    basicsr.train._gaussiansr_fixed = True
