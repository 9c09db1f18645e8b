"""ArbitraryScaleTestDataset: sizes at integer / non-integer / large scales, LR = resize of the cropped HR, LR files."""
import copy
import math
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from data_helpers import HR_DIR, build, read_rgb

from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import output_size
from gaussiansr_plugin.data.resize import imresize_to, quantize_uint8


def val_opt(root, scale, **kw):
    opt = dict(type='ArbitraryScaleTestDataset', dataroot_gt=root, io_backend={'type': 'disk'}, scale=scale)
    opt.update(kw)
    return opt


def test_registered():
    assert 'ArbitraryScaleTestDataset' in DATASET_REGISTRY


@pytest.mark.parametrize('scale', [2, 2.4, 3.3, 12])
def test_sizes_and_lr_are_consistent(scale):
    ds = build(**val_opt(HR_DIR, scale))
    assert len(ds) == 3
    for item in ds:
        assert set(item) == {'lq', 'gt', 'scale', 'lq_path', 'gt_path'}
        hr = read_rgb(item['gt_path'])
        h, w = item['lq'].shape[1:]
        assert (h, w) == (math.floor(hr.shape[0] / scale), math.floor(hr.shape[1] / scale))
        assert tuple(item['gt'].shape) == (3, ) + output_size((h, w), scale)
        big_h, big_w = item['gt'].shape[1:]
        assert big_h <= hr.shape[0] and big_w <= hr.shape[1]
        gt = item['gt'].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(gt, hr[:big_h, :big_w])  # top-left crop of the HR
        np.testing.assert_allclose(item['lq'].permute(1, 2, 0).numpy(), quantize_uint8(imresize_to(gt, (h, w))))
        assert item['scale'].item() == pytest.approx(scale)
        assert item['lq_path'] == item['gt_path']
        assert 0 <= item['lq'].min() and item['lq'].max() <= 1


def test_integer_scale_lr_is_basicsr_imresize():
    item = build(**val_opt(HR_DIR, 2))[0]  # cat.png, 96x128: exact at x2
    assert tuple(item['gt'].shape) == (3, 96, 128)
    gt = item['gt'].permute(1, 2, 0).numpy()
    reference = quantize_uint8(imresize(gt, 0.5))
    np.testing.assert_allclose(item['lq'].permute(1, 2, 0).numpy(), reference, atol=1.5 / 255)


def test_unquantized_option():
    item = build(**val_opt(HR_DIR, 3.3, lq_quantize=False))[1]
    lq = item['lq'].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(lq, imresize_to(item['gt'].permute(1, 2, 0).numpy(), lq.shape[:2]), atol=1e-6)


def test_lmdb_equals_disk(hr_lmdb):
    disk = build(**val_opt(HR_DIR, 2.4))
    lmdb = build(**val_opt(hr_lmdb, 2.4, io_backend={'type': 'lmdb'}))
    for a, b in zip(disk, lmdb):
        torch.testing.assert_close(a['lq'], b['lq'])
        torch.testing.assert_close(a['gt'], b['gt'])
        assert b['gt_path'] == osp.splitext(osp.basename(a['gt_path']))[0]


def _write_lr(hr_dir, lr_dir, scale, tmpl):
    """LR files named by ``tmpl`` from the HR (the Matlab resize of the top-left consistent crop)."""
    lr_dir.mkdir()
    for name in ('cat', 'cup', 'face'):
        hr = cv2.imread(osp.join(hr_dir, f'{name}.png'), cv2.IMREAD_COLOR).astype(np.float32) / 255.
        h, w = math.floor(hr.shape[0] / scale), math.floor(hr.shape[1] / scale)
        lr = quantize_uint8(imresize_to(hr[:round(h * scale), :round(w * scale)], (h, w)))
        cv2.imwrite(str(lr_dir / f'{tmpl.format(name)}.png'), np.round(lr * 255).astype(np.uint8))


def test_dataroot_lq_pairs_by_name_and_crops_gt(hr_dir, tmp_path):
    _write_lr(hr_dir, tmp_path / 'X3', 3, '{}x3')
    opt = val_opt(hr_dir, 3, dataroot_lq=str(tmp_path / 'X3'), filename_tmpl='{}x3')
    before = copy.deepcopy(opt)
    paired, on_the_fly = build(**opt), build(**val_opt(hr_dir, 3))
    assert opt == before
    for a, b in zip(paired, on_the_fly):
        assert a['lq_path'].endswith('x3.png') and a['gt_path'] == b['gt_path']
        assert tuple(a['gt'].shape[1:]) == output_size(a['lq'].shape[1:], 3)  # cup 120x100 -> 120x99
        torch.testing.assert_close(a['gt'], b['gt'])
        torch.testing.assert_close(a['lq'], b['lq'])


def test_dataroot_lq_errors(hr_dir, tmp_path):
    _write_lr(hr_dir, tmp_path / 'X2', 2, '{}')
    big = cv2.imread(str(tmp_path / 'X2' / 'cup.png'))
    cv2.imwrite(str(tmp_path / 'X2' / 'cup.png'), np.concatenate([big, big]))  # LR x2 now taller than the HR
    ds = build(**val_opt(hr_dir, 2, dataroot_lq=str(tmp_path / 'X2')))
    index = [p['gt_path'].endswith('cup.png') for p in ds.paths].index(True)
    with pytest.raises(ValueError, match=r'cup\.png is 120x100, smaller than 240x100'):
        ds[index]
    with pytest.raises(ValueError, match='cannot pair'):
        build(**val_opt(hr_dir, 2, dataroot_lq=str(tmp_path / 'X2'), filename_tmpl='{}x2'))
    with pytest.raises(FileNotFoundError, match='dataroot_lq'):
        build(**val_opt(hr_dir, 2, dataroot_lq=str(tmp_path / 'missing')))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing'):
        build(**val_opt(str(tmp_path / 'missing'), 2))
    with pytest.raises(ValueError, match='scale'):
        build(**val_opt(HR_DIR, None))
    with pytest.raises(ValueError, match='scale must be >= 1'):
        build(**val_opt(HR_DIR, 0.5))
    ds = build(**val_opt(HR_DIR, 100))  # 90 px / 100 -> no LR pixel left
    with pytest.raises(ValueError, match=r'too small for scale 100'):
        ds[0]
