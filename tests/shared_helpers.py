"""Helpers shared by several test modules (tests/ is put on sys.path by tests/conftest.py)."""
from gaussiansr_plugin.cli import gaussiansr_cli


def cli(*args) -> int:
    """``gaussiansr ARGS`` in-process; the exit code (0 when ``main`` returns)."""
    try:
        gaussiansr_cli.main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


def messages(err: str) -> str:
    """stderr without the progress bar: its ``error:`` and ``warning:`` lines (the bar redraws with carriage
    returns)."""
    lines = [line.strip() for line in err.replace('\r', '\n').splitlines()]
    return ''.join(line + '\n' for line in lines if line.startswith(('error:', 'warning:')))


def model_opt(net_opt: dict, tmp_path, name: str = 'unit', **train) -> dict:
    """A parsed-options dict that ``basicsr.models.build_model`` turns into a CPU GaussianSRModel in training mode;
    ``train`` entries are added to (or override) its ``train`` section."""
    return {
        'name': name, 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'dist': False, 'is_train': True, 'rank': 0,
        'network_g': net_opt,
        'path': {'pretrain_network_g': None, 'models': str(tmp_path), 'training_states': str(tmp_path)},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10],
                  'gamma': 0.5}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train},
    }
