"""The ``basicsr train|test`` launcher: flags, plugin imports, and real CPU runs of BasicSR's pipelines."""
import glob
import os
import re
import shutil
import subprocess
import sys

import cv2
import pytest
import yaml

from gaussiansr_plugin.cli import basicsr_cli
from gaussiansr_plugin.errors import UserError

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


def _launcher(*args, cwd, timeout=300):
    cmd = [sys.executable, '-m', 'gaussiansr_plugin.cli.basicsr_cli', *args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_help_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as help_exit:
        basicsr_cli.main(['--help'])
    assert help_exit.value.code == 0 and 'train' in capsys.readouterr().out
    with pytest.raises(SystemExit) as unknown_exit:
        basicsr_cli.main(['fly'])
    assert unknown_exit.value.code == 2 and 'unknown command' in capsys.readouterr().err
    if shutil.which('basicsr'):  # the installed entry point, in a process of its own
        assert subprocess.run(['basicsr', 'train', '--help'], capture_output=True).returncode == 0


def test_flags_match_basicsr():
    parser = basicsr_cli._option_parser('train')
    args = parser.parse_args(['-opt', 'x.yml', '--launcher', 'pytorch', '--auto_resume', '--debug', '--local_rank',
                              '1', '--force_yml', 'train:ema_decay=0.9'])
    assert (args.opt, args.launcher, args.auto_resume) == ('x.yml', 'pytorch', True)
    assert args.debug and args.local_rank == 1
    assert args.force_yml == ['train:ema_decay=0.9']


def test_custom_imports(tmp_path, monkeypatch):
    (tmp_path / 'my_plugin_mod.py').write_text('LOADED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yml = tmp_path / 'x.yml'
    yml.write_text(yaml.safe_dump({'name': 'x', 'custom_imports': {'imports': ['my_plugin_mod']}}))
    names = basicsr_cli.import_plugins(basicsr_cli.read_custom_imports(str(yml)))
    assert names[0] == 'gaussiansr_plugin' and 'my_plugin_mod' in names
    assert sys.modules['my_plugin_mod'].LOADED
    yml.write_text(yaml.safe_dump({'custom_imports': {'imports': ['no_such_module_xyz']}}))
    with pytest.raises(UserError, match='no_such_module_xyz'):
        basicsr_cli.import_plugins(basicsr_cli.read_custom_imports(str(yml)))
    optional = {'custom_imports': {'imports': ['no_such_module_xyz'], 'allow_failed_imports': True}}
    yml.write_text(yaml.safe_dump(optional))
    assert 'no_such_module_xyz' not in basicsr_cli.import_plugins(basicsr_cli.read_custom_imports(str(yml)))


def test_missing_option_file_is_one_line(tmp_path):
    out = _launcher('train', '-opt', 'missing.yml', cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == 'error: option file not found: missing.yml'


def test_train_validate_checkpoint_resume_and_test(tmp_path, photo_dirs, train_yml):
    (tmp_path / 'train.yml').write_text(train_yml(photo_dirs))
    out = _launcher('train', '-opt', 'train.yml', cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('Disable distributed.') == 1  # the launcher's own parse of the options is silent
    exp = tmp_path / 'experiments' / 'smoke'
    assert (exp / 'models' / 'net_g_10.pth').is_file() and (exp / 'training_states' / '10.state').is_file()
    log = open(glob.glob(str(exp / 'train_smoke_*.log'))[0]).read()
    assert re.search(r'# psnr: \d+\.\d+', log), log[-2000:]

    # --auto_resume continues from the last state up to the new total_iter
    (tmp_path / 'train.yml').write_text(train_yml(photo_dirs, total_iter=15))
    out = _launcher('train', '-opt', 'train.yml', '--auto_resume', cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (exp / 'training_states' / '15.state').is_file()
    logs = sorted(glob.glob(str(exp / 'train_smoke_*.log')))
    assert 'Resuming training from epoch' in open(logs[-1]).read()

    test_yml = {
        'name': 'smoke_test', 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'val_x3.3', 'type': 'ArbitraryScaleTestDataset',
                                'dataroot_gt': str(photo_dirs / 'val'), 'io_backend': {'type': 'disk'}, 'scale': 3.3}},
        'network_g': yaml.safe_load(train_yml(photo_dirs))['network_g'],
        'path': {'pretrain_network_g': str(exp / 'models' / 'net_g_15.pth'), 'param_key_g': 'params_ema',
                 'strict_load_g': True},
        'val': {'save_img': True, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 'scale', 'test_y_channel': True}}},
    }
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(test_yml))
    out = _launcher('test', '-opt', 'test.yml', cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    res = tmp_path / 'results' / 'smoke_test'
    log = open(glob.glob(str(res / 'test_smoke_test_*.log'))[0]).read()
    assert re.search(r'val_x3.3\s*\n\s*# psnr: \d+\.\d+', log), log[-2000:]
    images = sorted(glob.glob(str(res / 'visualization' / 'val_x3.3' / '*.png')))
    assert len(images) == 2
    lq_h = int(200 // 3.3)
    assert cv2.imread(images[0]).shape[:2] == (round(lq_h * 3.3), round(int(180 // 3.3) * 3.3))
