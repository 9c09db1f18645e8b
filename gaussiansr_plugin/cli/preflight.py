"""Checks of a parsed BasicSR option dict that run before anything is built, so that a mistake in a yml is one line.

Without them, BasicSR meets these mistakes late and raises a traceback: ``num_gpu: 1`` on a machine without CUDA
fails when the network moves to the GPU; a ``PairedImageDataset`` without a top-level ``scale`` fails at its first
item (in training: at the first validation); a missing data folder stops a test run at the first such dataset (and
BasicSR builds them in the sorted order of their keys, so ``test_10`` before ``test_2``); an unknown metric or a
wandb logger without wandb fails after training started. Every data folder is checked up front and all the missing
ones are listed at once, in the order of the yml.
"""
import importlib.util
from collections import OrderedDict
from os import path as osp
from typing import Dict, List, Mapping, Tuple

import torch

from basicsr.utils.registry import METRIC_REGISTRY
from ..errors import UserError
from ..option_checks import is_int_at_least

# BasicSR datasets that read ``opt['scale']``, which BasicSR's parse_options copies from the top-level ``scale``
SCALE_READERS = frozenset({
    'PairedImageDataset', 'RealESRGANPairedDataset', 'REDSDataset', 'REDSRecurrentDataset', 'Vimeo90KDataset',
    'Vimeo90KRecurrentDataset', 'VideoTestDUFDataset'
})
PATH_KEYS = ('meta_info_file', )  # dataset options naming a file, beside the dataroot_* folders


def check_num_gpu(opt: Mapping) -> List[str]:
    """``num_gpu`` (already resolved from ``auto``) must be a count of GPUs this machine has."""
    num_gpu = opt.get('num_gpu')
    if not is_int_at_least(num_gpu, 0):
        return [f'num_gpu must be auto or an int >= 0 (0: CPU), got {num_gpu!r}']
    if num_gpu > 0 and not torch.cuda.is_available():
        return [f'num_gpu: {num_gpu} asks for CUDA GPUs, but torch sees none (no GPU, or a CPU-only torch); '
                'set num_gpu: 0 to run on the CPU, or auto']
    if num_gpu > torch.cuda.device_count() and not opt.get('dist'):
        return [f'num_gpu: {num_gpu}, but only {torch.cuda.device_count()} CUDA GPU(s) are visible; '
                'set num_gpu: auto']
    return []


def dataset_paths(opt: Mapping) -> List[Tuple[str, str]]:
    """(dataset name, path) of every folder or file the datasets read, in the order of the yml."""
    paths = []
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not isinstance(dataset, Mapping):
            continue
        name = str(dataset.get('name', phase))
        for key, value in dataset.items():
            if (str(key).startswith('dataroot_') or key in PATH_KEYS) and isinstance(value, str):
                paths.append((name, value))
    return paths


def _names(names: List[str]) -> str:
    return ', '.join(names) if len(names) <= 2 else f'{names[0]} and {len(names) - 1} other datasets'


def missing_data(opt: Mapping) -> List[str]:
    """One entry per missing path, with the datasets that need it, in the order of the yml."""
    missing: Dict[str, List[str]] = OrderedDict()
    for name, path in dataset_paths(opt):
        if not osp.exists(path):
            missing.setdefault(path, []).append(name)
    if not missing:
        return []
    listed = '; '.join(f'{path} ({_names(users)})' for path, users in missing.items())
    return [f'{len(missing)} data path(s) not found (working directory {osp.abspath(".")}): {listed}']


def check_datasets(opt: Mapping) -> List[str]:
    """Each dataset is a mapping with a ``type``; BasicSR's datasets that read ``scale`` get one."""
    problems = []
    datasets = opt.get('datasets')
    if not isinstance(datasets, Mapping) or not datasets:
        return ['the yml has no datasets section']
    for phase, dataset in datasets.items():
        if not isinstance(dataset, Mapping) or 'type' not in dataset:
            problems.append(f'datasets.{phase} needs a type (e.g. ArbitraryScaleTestDataset)')
        elif dataset['type'] in SCALE_READERS and 'scale' not in dataset:
            problems.append(f"dataset '{dataset.get('name', phase)}' ({dataset['type']}) needs a scale: add the "
                            'top-level `scale: 4` of BasicSR\'s ymls, or `scale:` in the dataset')
    if opt.get('is_train') and 'train' not in datasets:
        problems.append('training needs a datasets.train section')
    return problems


def check_val(opt: Mapping) -> List[str]:
    """The ``val`` section the pipeline will read: metrics that exist, and the keys BasicSR reads unguarded."""
    val = opt.get('val')
    has_val_data = any(str(phase).split('_')[0] in ('val', 'test') for phase in opt.get('datasets') or {})
    if val is None:
        return [] if opt.get('is_train') or not has_val_data else ['a test yml needs a val section (save_img, metrics)']
    if not isinstance(val, Mapping):
        return [f'val must be a mapping of options, got {val!r}']
    problems = []
    required = (['val_freq', 'save_img'] if has_val_data else []) if opt.get('is_train') else ['save_img']
    if val.get('save_img'):
        required.append('suffix')
    for key in (k for k in required if k not in val):
        hint = '; `suffix: ~` for none' if key == 'suffix' else ''
        problems.append(f'val.{key} is missing (BasicSR reads it{hint})')
    metrics = val.get('metrics') or {}
    if not isinstance(metrics, Mapping):
        return problems + [f'val.metrics must be a mapping of metric names to options, got {metrics!r}']
    for name, metric in metrics.items():
        kind = metric.get('type') if isinstance(metric, Mapping) else None
        if kind not in METRIC_REGISTRY:
            problems.append(f"val.metrics.{name}: unknown metric type {kind!r}; use one of "
                            f"{', '.join(sorted(METRIC_REGISTRY.keys()))}")
    return problems


def check_logger(opt: Mapping) -> List[str]:
    """Training reads a ``logger`` section; a wandb project needs wandb and the tensorboard logger (BasicSR asserts
    it)."""
    if not opt.get('is_train'):
        return []
    if not isinstance(opt.get('logger'), Mapping):
        return ['training needs a logger section (print_freq, save_checkpoint_freq, use_tb_logger)']
    logger = opt['logger']
    wandb = logger.get('wandb') if isinstance(logger.get('wandb'), Mapping) else {}
    if wandb.get('project') is None or 'debug' in str(opt.get('name')):
        return []
    if importlib.util.find_spec('wandb') is None:
        return ['logger.wandb.project is set, but wandb is not installed: pip install wandb, or set project: ~']
    if logger.get('use_tb_logger') is not True:
        return ['logger.wandb.project needs logger.use_tb_logger: true (BasicSR logs to wandb through tensorboard)']
    return []


def check_options(opt: Mapping) -> None:
    """Raise one ``UserError`` naming every problem found, in the order of the yml's sections."""
    problems = check_num_gpu(opt) + check_datasets(opt) + missing_data(opt) + check_val(opt) + check_logger(opt)
    if problems:
        raise UserError('; '.join(problems))
