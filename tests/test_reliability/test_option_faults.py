"""Option faults are found before training starts and reported as one line (exit 2); exceptions raised after
training started keep their tracebacks."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.option_checks import BASICSR_DATASET_KEYS
from shared_helpers import as_setup_step

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')
BUILD_MODEL = as_setup_step(build_model)
BUILD_DATASET = as_setup_step(build_dataset)


def _model_opt(tiny_net_opt, tmp_path, network=None, encoder=None, path=None, train=None):
    net = dict(tiny_net_opt, encoder=dict(tiny_net_opt['encoder'], **(encoder or {})), **(network or {}))
    return {
        'name': 'opts', 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'dist': False, 'is_train': True, 'rank': 0,
        'network_g': net,
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'models': str(tmp_path), **(path or {})},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10],
                  'gamma': 0.5}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **(train or {})},
    }


@pytest.mark.parametrize('kwargs, expected', [
    pytest.param(dict(encoder={'type': 'edsr-basline'}),
                 "unknown encoder type 'edsr-basline': use one of ['edsr', 'edsr-baseline', 'rdn', 'swinir']",
                 id='unknown-encoder-type'),
    pytest.param(dict(network={'mlp_hiden': [8]}),
                 "GaussianSR: unknown option(s) 'mlp_hiden' (did you mean 'mlp_hidden'?); valid: bank_balance, "
                 'bank_size, cell_clip, chunk_size, encoder', id='unknown-GaussianSR-key'),
    pytest.param(dict(encoder={'num_feats': 8}),
                 "encoder 'edsr-baseline': unknown option(s) 'num_feats' (did you mean 'num_feat'?)",
                 id='unknown-encoder-key'),
    pytest.param(dict(encoder={'num_feat': -8}), "encoder 'edsr-baseline': num_feat must be an int >= 1",
                 id='negative-encoder-width'),
    pytest.param(dict(network={'bank_size': -1}), 'bank_size must be an int >= 1, got -1', id='negative-bank-size'),
    pytest.param(dict(network={'mlp_hidden': [16, 0]}), 'mlp_hidden must be a list of ints >= 1', id='zero-width-mlp'),
    pytest.param(dict(network={'head_hidden': 0}), 'head_hidden must be an int >= 1, got 0', id='zero-head-hidden'),
    pytest.param(dict(network={'sigma_range': [2.0, 0.5]}), 'sigma_range must be [min, max]',
                 id='reversed-sigma-range'),
    pytest.param(dict(network={'tau': 0}), 'tau must be > 0, got 0', id='zero-tau'),
    pytest.param(dict(train={'max_nan_steps': 0}), 'train.max_nan_steps must be an int >= 1', id='bad-max-nan-steps'),
])
def test_network_and_train_option_faults(tiny_net_opt, tmp_path, kwargs, expected):
    with pytest.raises(UserError) as info:
        BUILD_MODEL(_model_opt(tiny_net_opt, tmp_path, **kwargs))
    message = str(info.value)
    assert message.startswith('cannot build GaussianSRModel: ') and expected in message, message
    assert '\n' not in message


def test_unknown_keyword_is_a_value_error_listing_valid_keys():
    """Not Python's ``TypeError: __init__() got an unexpected keyword argument``."""
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'radious' \(did you mean 'radius'\?\); valid: .*tau"):
        build_network({'type': 'GaussianSR', 'radious': 2})
    with pytest.raises(ValueError, match=r"encoder 'swinir': unknown option\(s\) 'windowsize'"):
        build_network({'type': 'GaussianSR', 'encoder': {'type': 'swinir', 'windowsize': 8}})


def test_pretrained_checkpoint_of_another_architecture(tiny_net_opt, tmp_path):
    edsr = ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    torch.save({'params': edsr.state_dict()}, tmp_path / 'edsr.pth')
    opt = _model_opt(tiny_net_opt, tmp_path, path={'pretrain_network_g': str(tmp_path / 'edsr.pth')})
    with pytest.raises(UserError) as info:
        BUILD_MODEL(opt)
    message = str(info.value)
    edsr_path = tmp_path / 'edsr.pth'
    assert f'path.pretrain_network_g {edsr_path} does not fit the GaussianSR built from network_g' in message
    assert 'missing encoder.conv_first.weight, encoder.conv_first.bias, ' in message and '(+' in message
    assert 'unexpected conv_first.weight, conv_first.bias, ' in message and '\n' not in message

    torch.save({'weights': edsr.state_dict()}, tmp_path / 'odd.pth')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'odd.pth')
    with pytest.raises(UserError, match=r"has no 'params' entry \(it has: weights\)"):
        BUILD_MODEL(opt)


def _dataset_opt(photo_dirs, **extra):
    opt = dict(name='photos', type='ArbitraryScaleImageDataset', phase='train', dataroot_gt=str(photo_dirs / 'train'),
               io_backend={'type': 'disk'}, lq_size=16, scale_min=1, scale_max=4, sample_q=64)
    opt.update(extra)
    return opt


@pytest.mark.parametrize('extra, expected', [
    pytest.param({'scale_maxx': 3}, "ArbitraryScaleImageDataset 'photos' (phase train): unknown option(s) 'scale_maxx' "
                 "(did you mean 'scale_max'?); valid: batch_size_per_gpu, cache,", id='unknown-key'),
    pytest.param({'gt_size': 96, 'color': 'y'},
                 "unknown option(s) 'gt_size' (did you mean 'lq_size'?), 'color'; valid:", id='keys-of-other-datasets'),
    pytest.param({'scale_min': 3, 'scale_max': 2}, "dataset 'photos': need 1 <= scale_min <= scale_max, got "
                 'scale_min=3.0', id='scale-min-above-max'),
    pytest.param({'lq_size': -48}, "dataset 'photos': lq_size must be >= 1, got -48", id='negative-lq-size'),
    pytest.param({'sample_q': -1}, "dataset 'photos': sample_q=-1 must be in [1, 256]", id='negative-sample-q'),
    pytest.param({'dataroot_gt': '/no/such/folder'}, "dataset 'photos': dataroot_gt: folder not found: /no/such/folder",
                 id='missing-dataroot'),
])
def test_train_dataset_option_faults(photo_dirs, extra, expected):
    with pytest.raises(UserError) as info:
        BUILD_DATASET(_dataset_opt(photo_dirs, **extra))
    assert expected in str(info.value), str(info.value)


def test_basicsr_standard_dataset_keys_are_accepted(photo_dirs):
    standard = dict(scale=4, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1, prefetch_mode=None,
                    pin_memory=False, persistent_workers=False, use_shuffle=True, num_prefetch_queue=1,
                    meta_info_file=None, filename_tmpl='{}', dataroot_lq=None)
    assert set(standard) - {'dataroot_lq'} <= BASICSR_DATASET_KEYS
    assert len(build_dataset(_dataset_opt(photo_dirs, **standard))) == 4
    val = dict(name='val', type='ArbitraryScaleTestDataset', phase='val', dataroot_gt=str(photo_dirs / 'val'),
               io_backend={'type': 'disk'}, scale=2.5, num_worker_per_gpu=0, batch_size_per_gpu=1)
    assert len(build_dataset(val)) == 2
    with pytest.raises(UserError, match=r"ArbitraryScaleTestDataset 'val' \(phase val\): unknown option\(s\) 'scal'"):
        BUILD_DATASET(dict(val, scal=3))


def _launch(tmp_path, yml, pythonpath=None):
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(yml))
    env = dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [pythonpath, ENV.get('PYTHONPATH')])))
    return subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.train', '-opt', 'train.yml'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize('fault', ['network-key', 'dataset-key', 'logger-key'])
def test_basicsr_train_reports_option_faults_before_training(tmp_path, photo_dirs, train_yml, fault):
    yml = yaml.safe_load(train_yml(photo_dirs, name='opts', total_iter=4))
    if fault == 'network-key':
        yml['network_g']['num_gaussian_chanels'] = 4
        expected = ("error: cannot build GaussianSRModel: GaussianSR: unknown option(s) 'num_gaussian_chanels' (did "
                    "you mean 'num_gaussian_channels'?); valid: bank_balance, bank_size,")
    elif fault == 'logger-key':  # BasicSR would fail with a KeyError traceback after training started
        yml['logger']['print_freqq'] = yml['logger'].pop('print_freq')
        expected = "error: cannot build GaussianSRModel: logger: unknown option(s) 'print_freqq'"
    else:
        yml['datasets']['val']['scale_max'] = 4
        expected = "error: ArbitraryScaleTestDataset 'photos_val_x2.5' (phase val): unknown option(s) 'scale_max'"
    proc = _launch(tmp_path, yml)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and 'Start training' not in proc.stderr
    assert lines[-1].startswith(expected), lines[-1]
    assert [line for line in lines if line.startswith('error:')] == lines[-1:]
    assert not os.path.exists(tmp_path / 'experiments' / 'opts' / 'models' / 'net_g_latest.pth')


def test_errors_after_training_started_keep_their_traceback(tmp_path, photo_dirs, train_yml):
    """A ValueError raised by a bug inside the training loop is not mistaken for an option fault."""
    (tmp_path / 'buggy_plugin.py').write_text(
        'from gaussiansr_plugin.models.gaussiansr_model import GaussianSRModel\n'
        '_step = GaussianSRModel.optimize_parameters\n\n\n'
        'def optimize_parameters(self, current_iter):\n'
        '    if current_iter == 2:\n'
        "        raise ValueError('a bug inside training')\n"
        '    return _step(self, current_iter)\n\n\n'
        'GaussianSRModel.optimize_parameters = optimize_parameters\n')
    yml = yaml.safe_load(train_yml(photo_dirs, name='bug', total_iter=4, val=None))
    yml['custom_imports'] = {'imports': ['buggy_plugin']}
    proc = _launch(tmp_path, yml, pythonpath=str(tmp_path))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback (most recent call last)' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == 'ValueError: a bug inside training'
    assert 'error: ' not in proc.stderr
