"""``basicsr test`` refuses LR files made at another scale than the dataset's, and says when it tests random
weights."""
import os
import subprocess
import sys

import cv2
import pytest
import yaml

from basicsr.data import build_dataset
from gaussiansr_plugin.errors import DataError

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


def _lr_folder(hr_dir, lr_dir, scale):
    """LR files made from every HR image at ``scale`` (floor of the size, as the benchmarks do)."""
    os.makedirs(lr_dir)
    for name in os.listdir(hr_dir):
        hr = cv2.imread(os.path.join(hr_dir, name))
        size = (int(hr.shape[1] // scale), int(hr.shape[0] // scale))
        cv2.imwrite(os.path.join(lr_dir, name), cv2.resize(hr, size, interpolation=cv2.INTER_AREA))


def _dataset(photo_dirs, lr_dir, scale):
    return dict(name='val', type='ArbitraryScaleTestDataset', phase='val', dataroot_gt=str(photo_dirs / 'val'),
                dataroot_lq=str(lr_dir), io_backend={'type': 'disk'}, scale=scale)


@pytest.mark.parametrize('made_at, scale', [(2, 2), (3, 3), (4, 4), (2.4, 2.4)])
def test_lr_files_made_at_the_dataset_scale_pass(photo_dirs, tmp_path, made_at, scale):
    _lr_folder(photo_dirs / 'val', tmp_path / 'lr', made_at)
    item = build_dataset(_dataset(photo_dirs, tmp_path / 'lr', scale))[0]
    assert item['gt'].shape[1] == round(item['lq'].shape[1] * scale)


@pytest.mark.parametrize('made_at, scale', [(3, 2), (4, 3), (2, 1.5)])
def test_lr_files_made_at_another_scale_are_refused(photo_dirs, tmp_path, made_at, scale):
    _lr_folder(photo_dirs / 'val', tmp_path / 'lr', made_at)
    with pytest.raises(DataError, match=rf'the LR looks made at x{made_at}(\.0\d)?; check the scale of this dataset'):
        build_dataset(_dataset(photo_dirs, tmp_path / 'lr', scale))[0]


def test_basicsr_test_stops_with_one_line_and_warns_about_random_weights(photo_dirs, tmp_path, tiny_net_opt):
    _lr_folder(photo_dirs / 'val', tmp_path / 'lr_x3', 3)
    yml = {
        'name': 'wrong_scale', 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': dict(_dataset(photo_dirs, tmp_path / 'lr_x3', 2), name='val_x2')},
        'network_g': tiny_net_opt,
        'path': {'pretrain_network_g': None, 'strict_load_g': True},
        'val': {'save_img': False, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 'scale', 'test_y_channel': True}}},
    }
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(yml))
    proc = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.cli.basicsr_cli', 'test', '-opt', 'test.yml'],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert sum('testing a network with random weights' in line for line in lines) == 1
    assert lines[-1].startswith('error: HR ') and 'the LR looks made at x3' in lines[-1], lines[-1]
    assert 'psnr' not in proc.stderr.split('random weights')[-1]
