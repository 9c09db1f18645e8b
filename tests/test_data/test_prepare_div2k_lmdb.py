"""scripts/prepare_div2k_lmdb.py end to end on made-up images, run as a subprocess."""
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from data_helpers import build

from gaussiansr_plugin.data.image_source import IMG_EXTENSIONS

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'scripts', 'prepare_div2k_lmdb.py')


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def div2k(tmp_path):
    """A DIV2K-like layout: HR 0001..0003 (odd sizes) and LR_bicubic/X2 with names 0001x2.png."""
    rng = np.random.default_rng(0)
    hr, lr = tmp_path / 'DIV2K_train_HR', tmp_path / 'DIV2K_train_LR_bicubic' / 'X2'
    hr.mkdir()
    lr.mkdir(parents=True)
    for i, (h, w) in enumerate([(100, 130), (96, 96), (120, 70)], 1):
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(hr / f'{i:04d}.png'), img)
        cv2.imwrite(str(lr / f'{i:04d}x2.png'), cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return tmp_path


def meta(lmdb_path):
    with open(osp.join(lmdb_path, 'meta_info.txt')) as f:
        return [line.split() for line in f]


def test_hr_and_lr_lmdb_then_read_by_the_datasets(div2k):
    out = div2k / 'lmdb' / 'DIV2K_train_HR.lmdb'
    proc = run('--input', div2k / 'DIV2K_train_HR', '--output', out, '--lq', div2k / 'DIV2K_train_LR_bicubic' / 'X2')
    assert proc.returncode == 0, proc.stderr
    lr_out = div2k / 'lmdb' / 'DIV2K_train_LR_bicubic_X2.lmdb'
    assert [m[:2] for m in meta(out)] == [['0001.png', '(100,130,3)'], ['0002.png', '(96,96,3)'],
                                          ['0003.png', '(120,70,3)']]
    assert [m[:2] for m in meta(lr_out)] == [['0001.png', '(50,65,3)'], ['0002.png', '(48,48,3)'],
                                             ['0003.png', '(60,35,3)']]
    lmdb = {'type': 'lmdb'}
    paired = build(
        type='ArbitraryScaleTestDataset', dataroot_gt=str(out), dataroot_lq=str(lr_out), io_backend=lmdb, scale=2)
    disk = build(
        type='ArbitraryScaleTestDataset',
        dataroot_gt=str(div2k / 'DIV2K_train_HR'),
        dataroot_lq=str(div2k / 'DIV2K_train_LR_bicubic' / 'X2'),
        filename_tmpl='{}x2',
        scale=2)
    for a, b in zip(paired, disk):
        assert a['gt_path'] == osp.splitext(osp.basename(b['gt_path']))[0]
        torch.testing.assert_close(a['lq'], b['lq'])
        torch.testing.assert_close(a['gt'], b['gt'])
    train = build(type='ArbitraryScaleImageDataset', dataroot_gt=str(out), io_backend=lmdb, lq_size=16, sample_q=64)
    assert train[0]['lq'].shape == (3, 16, 16)


def test_subimages(div2k):
    out = div2k / 'sub.lmdb'
    proc = run('--input', div2k / 'DIV2K_train_HR', '--output', out, '--crop-size', 64, '--step', 32, '--n-thread', 2)
    assert proc.returncode == 0, proc.stderr
    names = [m[0] for m in meta(out)]
    # rows x cols per image: 100x130 -> 3x4, 96x96 -> 2x2, 120x70 -> 3x2 (a last crop flush with each border)
    assert len(names) == 12 + 4 + 6
    assert names[:2] == ['0001_s001.png', '0001_s002.png'] and names[-1] == '0003_s006.png'
    assert {m[1] for m in meta(out)} == {'(64,64,3)'}
    assert not [p for p in (div2k).iterdir() if p.name.startswith('subimages_')]  # temp folder removed


def test_errors_are_one_line_with_status_2(div2k, tmp_path):
    (tmp_path / 'empty').mkdir()
    cases = [
        (('--input', tmp_path / 'missing', '--output', tmp_path / 'a.lmdb'), 'folder not found'),
        (('--input', tmp_path / 'empty', '--output', tmp_path / 'a.lmdb'), 'no images'),
        (('--input', div2k / 'DIV2K_train_HR', '--output', tmp_path / 'a'), 'must end in .lmdb'),
        (('--input', div2k / 'DIV2K_train_HR', '--output', tmp_path / 'a.lmdb', '--lq', tmp_path / 'empty'),
         'no images'),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert 'Traceback' not in proc.stderr
    (tmp_path / 'b.lmdb').mkdir()
    proc = run('--input', div2k / 'DIV2K_train_HR', '--output', tmp_path / 'b.lmdb')
    assert proc.returncode == 2 and 'already exists' in proc.stderr
    assert not (tmp_path / 'a.lmdb').exists()  # nothing written by the failed runs


def test_extensions_match_the_package():
    sys.path.insert(0, osp.dirname(SCRIPT))
    try:
        import prepare_div2k_lmdb
    finally:
        sys.path.remove(osp.dirname(SCRIPT))
    assert prepare_div2k_lmdb.IMG_EXTENSIONS == IMG_EXTENSIONS
