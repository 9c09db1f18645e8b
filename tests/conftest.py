"""Shared fixtures: tiny GaussianSR configs that run fast on two CPU cores."""
import os
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

import gaussiansr_plugin  # noqa: F401  (BasicSR compat alias + registration)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared_helpers, under any import mode

os.environ.setdefault('XDG_CACHE_HOME', os.path.join(os.path.dirname(__file__), '..', '.pytest_cache', 'xdg'))
torch.set_num_threads(2)

TINY_NET = dict(
    type='GaussianSR',
    encoder=dict(type='edsr-baseline', num_feat=16, num_block=1),
    num_gaussian_channels=8,
    bank_size=16,
    mlp_hidden=[32, 32],
)


@pytest.fixture(autouse=True)
def _keep_the_start_method():
    """Restores multiprocessing's start method after each test: BasicSR's ``init_dist`` sets 'spawn' for the whole
    process, after which every later DataLoader worker re-imports torch and BasicSR (seconds each)."""
    before = torch.multiprocessing.get_start_method(allow_none=True)
    yield
    if torch.multiprocessing.get_start_method(allow_none=True) != before:
        torch.multiprocessing.set_start_method(before, force=True)


@pytest.fixture
def tiny_net_opt():
    """Option dict (``network_g``) of a tiny GaussianSR."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_NET.items()}


@pytest.fixture(scope='session')
def photo_dirs(tmp_path_factory):
    """Small crops of scikit-image's bundled photos: 4 train images and 2 val images."""
    root = tmp_path_factory.mktemp('photos')
    photo = skdata.astronaut()[:, :, ::-1]
    for split, n in (('train', 4), ('val', 2)):
        os.makedirs(root / split)
        for i in range(n):
            y, x = 60 * i + (0 if split == 'train' else 250), 40 * i
            cv2.imwrite(str(root / split / f'{split}{i}.png'), np.ascontiguousarray(photo[y:y + 200, x:x + 180]))
    return root


def _train_yml(photos, name='smoke', total_iter=10, **overrides):
    text = textwrap.dedent(f"""\
        name: {name}
        model_type: GaussianSRModel
        num_gpu: 0
        manual_seed: 10
        datasets:
          train:
            name: photos
            type: ArbitraryScaleImageDataset
            dataroot_gt: {photos}/train
            io_backend: {{type: disk}}
            lq_size: 16
            scale_min: 1
            scale_max: 4
            sample_q: 64
            use_hflip: true
            use_rot: true
            num_worker_per_gpu: 0
            batch_size_per_gpu: 2
            dataset_enlarge_ratio: 1
          val:
            name: photos_val_x2.5
            type: ArbitraryScaleTestDataset
            dataroot_gt: {photos}/val
            io_backend: {{type: disk}}
            scale: 2.5
        network_g:
          type: GaussianSR
          encoder: {{type: edsr-baseline, num_feat: 8, num_block: 1}}
          bank_size: 9
          mlp_hidden: [16]
        path: {{pretrain_network_g: ~, strict_load_g: true, resume_state: ~}}
        train:
          ema_decay: 0.9
          optim_g: {{type: Adam, lr: !!float 1e-3}}
          scheduler: {{type: MultiStepLR, milestones: [100], gamma: 0.5}}
          total_iter: {total_iter}
          warmup_iter: -1
          pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
        val:
          val_freq: 5
          save_img: false
          suffix: ~
          metrics:
            psnr: {{type: calculate_psnr, crop_border: scale, test_y_channel: true}}
        logger:
          print_freq: 5
          save_checkpoint_freq: 5
          use_tb_logger: false
        """)
    opt = yaml.safe_load(text)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(opt.get(section), dict):
            _merge(opt[section], values)
        else:
            opt[section] = values
    return yaml.safe_dump(opt, sort_keys=False)


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture
def train_yml():
    """``train_yml(photos, name, total_iter, **overrides)``: a tiny CPU training yml (text); overrides are
    ``section=dict`` merged into that section."""
    return _train_yml
