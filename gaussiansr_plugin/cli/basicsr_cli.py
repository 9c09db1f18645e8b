"""``basicsr train|test``: import the installed plugins, then hand over to BasicSR's own pipelines.

BasicSR 1.4.2 ships no console script. This one takes exactly the flags of ``basicsr/train.py`` and
``basicsr/test.py`` (``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ``--local_rank``,
``--force_yml``), imports every plugin registered under the ``basicsr.plugins`` entry-point group plus the
modules named in the yml's ``custom_imports: {imports: [...]}`` (the OpenMMLab convention), and runs
``train_pipeline`` / ``test_pipeline`` with the current directory as the experiments root.

Failures are reported as one ``error: ...`` line on stderr (after BasicSR's own log lines): mistakes in the
command line, the options or the files found while setting up the run (exit 2, see ``setup_errors``), an unusable
image or LMDB entry met at any time (``DataError``, exit 2, also from a DataLoader worker), and a diverged training
run (``TrainingDiverged``, exit 1). Any other exception keeps its traceback; ``GAUSSIANSR_TRACEBACK=1`` shows the
traceback of the reported ones too.
"""
import argparse
import contextlib
import importlib
import io
import os
import sys
from importlib import metadata
from typing import List, Optional

import yaml

from ..errors import CheckpointWriteError, DataError, TrainingDiverged, UserError, first_line
from .arguments import fail

PLUGIN_GROUP = 'basicsr.plugins'


def _option_parser(command: str) -> argparse.ArgumentParser:
    """The same flags as BasicSR's ``parse_options`` (used for ``--help`` and to find ``-opt``)."""
    parser = argparse.ArgumentParser(prog=f'basicsr {command}', description=f'BasicSR {command} pipeline.')
    parser.add_argument('-opt', type=str, required=True, help='Path to option YAML file.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--auto_resume', action='store_true')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--local_rank', type=int, default=0)
    parser.add_argument('--force_yml', nargs='+', default=None, help='Force to update yml files, e.g. train:ema=0.9')
    return parser


def read_yml(opt_path: str) -> dict:
    """The options file as a plain dict, or one-line errors for a missing or malformed file."""
    if not os.path.isfile(opt_path):
        raise UserError(f'option file not found: {opt_path}')
    try:
        with open(opt_path) as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise UserError(f'cannot parse {opt_path}: {first_line(exc)}') from exc
    if not isinstance(opt, dict):
        raise UserError(f'{opt_path} is not a YAML mapping of options')
    return opt


def read_custom_imports(opt_path: str) -> List[str]:
    """Module names listed under ``custom_imports.imports`` in the yml (empty if absent)."""
    custom = read_yml(opt_path).get('custom_imports') or {}
    imports = custom.get('imports', []) if isinstance(custom, dict) else custom
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        raise UserError(f'{opt_path}: custom_imports.imports must be a list of module names')
    allow_failed = isinstance(custom, dict) and bool(custom.get('allow_failed_imports', False))
    return imports if not allow_failed else [f'?{m}' for m in imports]


def import_plugins(custom_imports: List[str]) -> List[str]:
    """Import this plugin, every ``basicsr.plugins`` entry point, then ``custom_imports``; return their names.

    A name starting with ``?`` may fail to import (``allow_failed_imports: true``).
    """
    import gaussiansr_plugin  # noqa: F401  (alias for BasicSR, registration)
    names = ['gaussiansr_plugin']
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        if entry.value not in names:
            importlib.import_module(entry.value)
            names.append(entry.value)
    for name in custom_imports:
        optional, name = name.startswith('?'), name.lstrip('?')
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if optional:
                continue
            raise UserError(f"custom_imports: cannot import '{name}' ({exc}); is it installed or on PYTHONPATH?"
                            ) from exc
        names.append(name)
    return names


def run(command: str, argv: List[str]) -> None:
    """Run BasicSR's ``train_pipeline`` or ``test_pipeline`` with ``argv`` as its command line.

    The options are parsed as the pipeline will parse them and checked first (``preflight``), so that a mistake in
    them is one line before anything is built; set-up errors of the pipeline itself are one line too
    (``setup_errors``).
    """
    args = _option_parser(command).parse_args(argv)
    import_plugins(read_custom_imports(args.opt))
    from . import basicsr_fixes, preflight
    from .setup_errors import reported_as_user_errors
    basicsr_fixes.apply()
    if args.launcher == 'pytorch' and read_yml(args.opt).get('num_gpu') == 0:
        basicsr_fixes.init_dist('pytorch', on_cpu=True)  # before BasicSR's parse, whose call then keeps this group
    sys.argv = [f'basicsr {command}'] + list(argv)
    if command == 'train':
        from basicsr.train import parse_options, train_pipeline as pipeline
    else:
        from basicsr.test import parse_options, test_pipeline as pipeline
    with reported_as_user_errors():
        with contextlib.redirect_stdout(io.StringIO()):  # BasicSR's own parse, in the pipeline, prints its lines
            opt = parse_options(os.getcwd(), is_train=command == 'train')[0]
        preflight.check_options(opt)
        pipeline(os.getcwd())


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog='basicsr', description='BasicSR train/test launcher that loads installed plugins (GaussianSR, ...).')
    parser.add_argument('command', choices=['train', 'test'], help='train: train_pipeline; test: test_pipeline')
    if not argv or argv[0] in ('-h', '--help'):
        parser.print_help()
        sys.exit(0 if argv else 2)
    if argv[0] not in ('train', 'test'):
        parser.error(f"unknown command '{argv[0]}' (choose train or test)")
    try:
        run(argv[0], argv[1:])
    except (UserError, DataError, TrainingDiverged, CheckpointWriteError) as exc:
        if os.environ.get('GAUSSIANSR_TRACEBACK', '') not in ('', '0'):
            raise
        fail(first_line(exc), code=1 if isinstance(exc, TrainingDiverged) else 2)


if __name__ == '__main__':
    main()
