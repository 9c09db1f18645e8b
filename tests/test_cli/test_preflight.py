"""Mistakes in a yml that can be seen before anything is built are one line (``cli/preflight.py``)."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from gaussiansr_plugin.cli import preflight
from gaussiansr_plugin.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


def _opt(tmp_path, **changes):
    """A parsed test-pipeline option dict whose data folders exist."""
    (tmp_path / 'hr').mkdir(exist_ok=True)
    opt = {
        'name': 'x', 'num_gpu': 0, 'is_train': False, 'dist': False,
        'datasets': {'test_1': {'name': 'set', 'type': 'ArbitraryScaleTestDataset', 'phase': 'test',
                                'dataroot_gt': str(tmp_path / 'hr'), 'scale': 2.4}},
        'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 'scale'}}},
    }
    opt.update(changes)
    return opt


def _message(opt) -> str:
    with pytest.raises(UserError) as info:
        preflight.check_options(opt)
    assert '\n' not in str(info.value)
    return str(info.value)


def test_valid_options_pass(tmp_path):
    preflight.check_options(_opt(tmp_path))


def test_num_gpu_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert _message(_opt(tmp_path, num_gpu=1)).startswith('num_gpu: 1 asks for CUDA GPUs, but torch sees none')
    assert 'num_gpu must be auto or an int >= 0' in _message(_opt(tmp_path, num_gpu='two'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    assert 'only 1 CUDA GPU(s) are visible' in _message(_opt(tmp_path, num_gpu=2))


def test_basicsr_dataset_without_scale(tmp_path):
    paired = {'name': 'paired', 'type': 'PairedImageDataset', 'dataroot_gt': str(tmp_path / 'hr'),
              'dataroot_lq': str(tmp_path / 'hr')}
    message = _message(_opt(tmp_path, datasets={'test_1': paired}))
    assert message.startswith("dataset 'paired' (PairedImageDataset) needs a scale: add the top-level `scale: 4`")
    preflight.check_options(_opt(tmp_path, datasets={'test_1': dict(paired, scale=4)}))


def test_every_missing_folder_at_once_in_yml_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datasets = {}
    for i, (name, lq) in enumerate([('b_x2', 'b_lr'), ('a_x2', None), ('b_x3', None), ('c_x2', None)], 1):
        datasets[f'test_{i}'] = {'name': name, 'type': 'ArbitraryScaleTestDataset', 'dataroot_gt': name[0],
                                 'dataroot_lq': lq, 'scale': 2}
    (tmp_path / 'c').mkdir()
    assert _message(_opt(tmp_path, datasets=datasets)) == (
        f'3 data path(s) not found (working directory {tmp_path}): b (b_x2, b_x3); b_lr (b_x2); a (a_x2)')


@pytest.mark.parametrize('val, expected', [
    ({'save_img': True, 'metrics': {}}, 'val.suffix is missing (BasicSR reads it; `suffix: ~` for none)'),
    ({'metrics': {}}, 'val.save_img is missing'),
    ({'save_img': False, 'metrics': {'psnr': {'type': 'calculate_pnsr'}}},
     "val.metrics.psnr: unknown metric type 'calculate_pnsr'; use one of calculate_niqe, calculate_psnr,"),
    (None, 'a test yml needs a val section'),
])
def test_val_section(tmp_path, val, expected):
    assert _message(_opt(tmp_path, val=val)).startswith(expected)


def test_train_needs_train_data_val_freq_logger_and_wandb(tmp_path, monkeypatch):
    opt = _opt(tmp_path, is_train=True, logger={'use_tb_logger': False, 'wandb': {'project': 'p'}})
    monkeypatch.setattr(preflight.importlib.util, 'find_spec', lambda name: None)
    assert _message(opt) == ('training needs a datasets.train section; val.val_freq is missing (BasicSR reads it); '
                             'logger.wandb.project is set, but wandb is not installed: pip install wandb, or set '
                             'project: ~')
    opt.pop('logger')
    assert _message(opt).endswith('; training needs a logger section (print_freq, save_checkpoint_freq, use_tb_logger)')


def _launch(command, yml, cwd):
    return subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.cli.basicsr_cli', command, '-opt', str(yml)],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def _assert_one_line(proc, expected_start):
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f'error: {expected_start}'), errors
    return errors[0]


def test_benchmark_yml_lists_every_missing_folder_in_order(tmp_path):
    yml = os.path.join(ROOT, 'options', 'test_gaussiansr_benchmarks_protocol_a.yml')
    line = _assert_one_line(_launch('test', yml, tmp_path), '24 data path(s) not found')
    with open(yml) as f:
        datasets = yaml.safe_load(f)['datasets'].values()
    expected = []
    for d in datasets:
        expected += [p for p in (d['dataroot_gt'], d.get('dataroot_lq')) if p and p not in expected]
    assert [part.split(' (')[0] for part in line.split(': ', 2)[2].split('; ')] == expected
    assert expected[0] == 'datasets/benchmark/Set5/HR' and expected[-1] == 'datasets/benchmark/General100/LR_bicubic/X4'
    assert not (tmp_path / 'results').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_launcher_num_gpu_without_cuda(tmp_path, photo_dirs, train_yml):
    yml = yaml.safe_load(train_yml(photo_dirs, name='gpu', total_iter=2))
    yml['num_gpu'] = 1
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(yml))
    _assert_one_line(_launch('train', 'train.yml', tmp_path), 'num_gpu: 1 asks for CUDA GPUs')
    assert not (tmp_path / 'experiments').exists()
