"""Checks of the ``train``, ``val``, ``logger`` and ``path`` sections GaussianSRModel runs under, before anything is
built.

BasicSR reads these sections with ``opt[...][key]`` at the iteration that needs a key, so a misspelt key is
ignored (``grad_clipp``, ``pretrain_net_g``: random weights tested) or fails with a ``KeyError`` traceback long
after training started (``print_freqq``), a
learning rate written ``1e-4`` (a string in YAML) fails inside the optimizer, and ``total_iter: 0`` saves an
untrained model. Here each becomes one ``ValueError`` naming the option when the model is built.
"""
from typing import Mapping

from basicsr.utils import get_root_logger
from ..option_checks import check_int_option, check_keys, is_number
from ..precision import DEFAULT_PRECISION, check_precision

# SRModel's own keys (basicsr/models/sr_model.py, basicsr/train.py), then GaussianSRModel's
TRAIN_KEYS = frozenset({'ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt',
                        'perceptual_opt', 'amp', 'grad_clip', 'tau_schedule', 'max_nan_steps', 'bank_lr_mult',
                        'cuda_graph'})
VAL_KEYS = frozenset({'val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'chunk_size', 'tile', 'tile_overlap',
                      'precision'})
# old spellings of val keys: they keep working, with a warning, until the next release
RENAMED_VAL_KEYS = {'query_chunk': 'chunk_size'}
LOGGER_KEYS = frozenset({'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'})
# what BasicSR reads or sets under path (parse_options, check_resume, the models); per-network keys by prefix
PATH_KEYS = frozenset({'resume_state', 'ignore_resume_networks', 'experiments_root', 'models', 'training_states', 'log',
                       'visualization', 'results_root'})
PATH_PREFIXES = ('pretrain_network_', 'param_key_', 'strict_load_')


def _check_count(name: str, value) -> None:
    """A number of iterations >= 1; BasicSR ymls write large ones as floats (``!!float 5e4``)."""
    if not (is_number(value) and value >= 1 and float(value).is_integer()):
        raise ValueError(f'{name} must be a whole number >= 1, got {value!r}')


def _section(opt: Mapping, name: str) -> Mapping:
    section = opt.get(name)
    if section is not None and not isinstance(section, Mapping):
        raise ValueError(f'{name} must be a mapping of options, got {section!r}')
    return section or {}


def val_options(opt: Mapping) -> dict:
    """The ``val`` section with every old spelling (``RENAMED_VAL_KEYS``) under its current name, and one warning
    line per old spelling used."""
    val = dict(_section(opt, 'val'))
    for old, new in RENAMED_VAL_KEYS.items():
        if old not in val:
            continue
        if new in val:
            raise ValueError(f'val.{old} is the old name of val.{new}: give only val.{new}')
        get_root_logger().warning(f'val.{old} is deprecated: use val.{new} (the old name goes in the next release)')
        val[new] = val.pop(old)
    return val


def check_sections(opt: Mapping) -> dict:
    """Raise a ``ValueError`` naming the option for unknown keys in ``train``, ``val``, ``logger`` and ``path`` (a
    misspelt ``pretrain_network_g`` would test random weights), missing keys
    BasicSR reads later, and values that are not numbers of the right range.

    Args:
        opt (Mapping): The parsed options of the run (``is_train`` tells training from testing).

    Returns:
        dict: The ``val`` section with current spellings (``val_options``).
    """
    train, val, logger = _section(opt, 'train'), val_options(opt), _section(opt, 'logger')
    check_keys(train, TRAIN_KEYS, 'train')
    check_keys(val, VAL_KEYS, 'val')
    check_keys(logger, LOGGER_KEYS, 'logger')
    check_keys(_section(opt, 'path'), PATH_KEYS, 'path', PATH_PREFIXES)
    check_int_option('val.chunk_size', val.get('chunk_size'), 1)
    check_int_option('val.tile', val.get('tile'), 1)
    check_int_option('val.tile_overlap', val.get('tile_overlap', 0), 0, optional=False)
    check_precision(val.get('precision', DEFAULT_PRECISION), 'val.precision')
    if opt.get('val') is not None and 'save_img' not in val:
        raise ValueError('missing option val.save_img (true or false)')
    if not opt.get('is_train'):
        return val
    lr = (train.get('optim_g') or {}).get('lr')
    if not (is_number(lr) and lr > 0):
        hint = ' (YAML reads 1e-4 as text: write !!float 1e-4 or 1.0e-4)' if isinstance(lr, str) else ''
        raise ValueError(f'train.optim_g.lr must be a number > 0, got {lr!r}{hint}')
    if 'total_iter' in train:
        _check_count('train.total_iter', train['total_iter'])
    if opt.get('val') is not None:
        _check_count('val.val_freq', val.get('val_freq'))
    if opt.get('logger') is not None:
        _check_count('logger.print_freq', logger.get('print_freq'))
        _check_count('logger.save_checkpoint_freq', logger.get('save_checkpoint_freq'))
    return val
