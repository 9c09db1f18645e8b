"""The fixes BasicSR 1.4.2 needs, applied in one place (``apply``) before our launcher calls BasicSR's
``train_pipeline`` / ``test_pipeline``.

Each entry of ``FIXES`` is named after the upstream bug and replaces the one BasicSR function (or class) it lives
in; ``tests/test_cli/test_basicsr_fixes.py`` shows each bug on the upstream function and its absence on ours. They
were written against BasicSR 1.4.2, the version requirements.txt pins: under any other version ``apply`` refuses in
one line instead of patching code it was not written for (re-check each bug there, then update
``BASICSR_VERSION``). The launcher's one-line errors replace nothing (``setup_errors``).
"""
import importlib
import os
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from os import path as osp
from typing import Any, Callable, Dict, Tuple

import torch
import torch.distributed as dist
import yaml

import basicsr
import basicsr.test
import basicsr.train
from basicsr.utils import scandir
from basicsr.utils.options import ordered_yaml
from ..data import resumable_sampler
from ..errors import UserError
from ..safe_load import safe_torch_load


def load_resume_state(opt: dict):
    """The resume state (or None) from ``path.training_states`` (auto_resume) or ``path.resume_state``, loaded safely
    onto the device the run trains on; records the resume point in ``opt['_resume_point']`` for ``make_resumable``."""
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


def init_dist(launcher: str, backend: str = 'nccl', on_cpu: bool = False, **kwargs) -> None:
    """Initialise torch.distributed for ``--launcher pytorch``: NCCL on GPUs, gloo where the run trains on CPUs
    (``on_cpu``: the yml says ``num_gpu: 0``) or no GPU exists; once per process, as the launcher parses the options
    before BasicSR's pipeline parses them again."""
    if dist.is_initialized():
        return
    if launcher != 'pytorch':
        from basicsr.utils.dist_util import init_dist as basicsr_init_dist
        basicsr_init_dist(launcher, backend, **kwargs)
        return
    if on_cpu or not torch.cuda.is_available():
        backend = 'gloo'
    else:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def keep_dataset_scales(parse_options: Callable) -> Callable:
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


@dataclass(frozen=True)
class Fix:
    """One upstream bug and the BasicSR attribute it is fixed in.

    Attributes:
        bug (str): The upstream bug, as the fix is named.
        module (str): The BasicSR module whose attribute is replaced (where BasicSR's pipeline looks it up).
        attr (str): The function or class replaced.
        fixed (Callable): Takes the upstream attribute, returns the fixed one.
    """
    bug: str
    module: str
    attr: str
    fixed: Callable[[Any], Any]


BASICSR_VERSION = '1.4.2'
FIXES = (
    Fix('load_resume_state maps the state to CUDA (fails without a GPU) and auto_resume looks under ./experiments, '
        'not path.training_states', 'basicsr.train', 'load_resume_state', lambda upstream: load_resume_state),
    Fix('init_dist takes the rank modulo the GPU count and NCCL (fails without a GPU)', 'basicsr.utils.options',
        'init_dist', lambda upstream: init_dist),
    Fix('a resumed run restarts its epoch and its augmentation streams', 'basicsr.train', 'EnlargedSampler',
        lambda upstream: resumable_sampler.ResumableSampler),
    Fix('a resumed run restarts its epoch and its augmentation streams', 'basicsr.train',
        'create_train_val_dataloader', resumable_sampler.make_resumable),
    Fix("parse_options copies a top-level scale over every dataset's own", 'basicsr.train', 'parse_options',
        keep_dataset_scales),
    Fix("parse_options copies a top-level scale over every dataset's own", 'basicsr.test', 'parse_options',
        keep_dataset_scales),
)
_UPSTREAM: Dict[Tuple[str, str], Any] = {}  # (module, attr) -> BasicSR's own, kept by apply


def upstream(module: str, attr: str) -> Any:
    """BasicSR's own ``module.attr``, also after ``apply`` replaced it."""
    return _UPSTREAM.get((module, attr), getattr(importlib.import_module(module), attr))


def apply() -> None:
    """Apply ``FIXES`` to BasicSR's modules (idempotent).

    Raises:
        UserError: BasicSR is not the version the fixes were written for.
    """
    if basicsr.__version__ != BASICSR_VERSION:
        raise UserError(f"BasicSR {basicsr.__version__} is installed, but the launcher's fixes of BasicSR bugs were "
                        f'written for {BASICSR_VERSION} (requirements.txt pins it): '
                        f'pip install basicsr=={BASICSR_VERSION}')
    if getattr(basicsr.train, '_gaussiansr_fixed', False):
        return
    for fix in FIXES:
        module = importlib.import_module(fix.module)
        _UPSTREAM[(fix.module, fix.attr)] = getattr(module, fix.attr)
        setattr(module, fix.attr, fix.fixed(getattr(module, fix.attr)))
    basicsr.train._gaussiansr_fixed = True
