"""Numeric options and inputs are checked where they enter (arch, model ``val``/``train``/``logger``, ``upsample``):
one error naming the option instead of garbage (a negative chunk) or a traceback from deep inside PyTorch."""
import pytest
import torch

from basicsr.models import build_model
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.errors import UserError
from shared_helpers import as_setup_step, model_opt

BUILD_MODEL = as_setup_step(build_model)


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return GaussianSR(encoder={'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, bank_size=4,
                      mlp_hidden=[8]).eval()


@pytest.mark.parametrize('lq, kwargs, error, expected', [
    (None, dict(chunk_size=-1), ValueError, 'chunk_size must be an int >= 1 (or null), got -1'),
    (None, dict(chunk_size='big'), ValueError, "chunk_size must be an int >= 1 (or null), got 'big'"),
    (None, dict(chunk_size=2.5), ValueError, 'chunk_size must be an int >= 1'),
    (None, dict(tile=-3), ValueError, 'tile must be an int >= 1 (or null), got -3'),
    (None, dict(tile=4, tile_overlap=-1), ValueError, 'tile_overlap must be an int >= 0, got -1'),
    (None, dict(size=(0, 8)), ValueError, 'size must be (H, W) with ints >= 1, got (0, 8)'),
    (None, dict(size=(8.5, 8)), ValueError, 'size must be (H, W) with ints >= 1'),
    (torch.rand(3, 6, 6), {}, ValueError, 'lq must have shape [B, 3, h, w] (RGB, h, w >= 1), got (3, 6, 6)'),
    (torch.rand(1, 4, 6, 6), {}, ValueError, 'lq must have shape [B, 3, h, w]'),
    (torch.rand(1, 3, 0, 6), {}, ValueError, 'lq must have shape [B, 3, h, w]'),
    (torch.randint(0, 255, (1, 3, 6, 6), dtype=torch.uint8), {}, TypeError,
     'lq must be a float tensor in [0, 1], got torch.uint8 (for 8-bit pixels: lq.float() / 255)'),
    (torch.rand(1, 3, 6, 6, dtype=torch.float64), {}, TypeError,
     "lq is torch.float64, the network's weights are torch.float32"),
    (torch.rand(1, 3, 6, 6).half(), {}, TypeError, "lq is torch.float16, the network's weights are torch.float32"),
])
def test_upsample_checks_its_arguments(net, lq, kwargs, error, expected):
    kwargs = dict(dict(size=(12, 12)), **kwargs)
    with pytest.raises(error) as info:
        net.upsample(torch.rand(1, 3, 6, 6) if lq is None else lq, **kwargs)
    assert expected in str(info.value)


def test_upsample_under_autocast_takes_float32_input(net):
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert net.upsample(torch.rand(1, 3, 6, 6), (12, 12)).shape == (1, 3, 12, 12)


@pytest.mark.parametrize('options, expected', [
    (dict(chunk_size='big'), "chunk_size must be an int >= 1, got 'big'"),
    (dict(chunk_size=-1), 'chunk_size must be an int >= 1, got -1'),
    (dict(tau='1e-4'), "tau must be > 0, got '1e-4'"),
    (dict(tau=float('nan')), 'tau must be > 0, got nan'),
    (dict(sigma_range=['0.3', 1.5]), 'sigma_range must be [min, max] with 0 < min < max'),
    (dict(num_gaussian_channels=2.5), 'num_gaussian_channels must be in [0, 8], got 2.5'),
    (dict(radius=True), 'radius must be an int in [0, 7], got True'),
    (dict(bank_balance=-0.01), 'bank_balance must be a number >= 0, got -0.01'),
    (dict(bank_balance=float('inf')), 'bank_balance must be a number >= 0, got inf'),
    (dict(bank_balance='1e-2'), "bank_balance must be a number >= 0, got '1e-2'"),
    (dict(bank_balance=True), 'bank_balance must be a number >= 0, got True'),
    (dict(bank_balance=0.01, num_gaussian_channels=0), 'bank_balance needs a Gaussian bank'),
])
def test_arch_numeric_options(options, expected):
    with pytest.raises(ValueError) as info:
        GaussianSR(encoder={'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, **options)
    assert expected in str(info.value)


def _opt(tiny_net_opt, tmp_path, section, values, is_train=True):
    opt = model_opt(tiny_net_opt, tmp_path)
    opt.update(is_train=is_train, val={'val_freq': 5, 'save_img': False},
               logger={'print_freq': 5, 'save_checkpoint_freq': 5})
    opt[section] = dict(opt[section], **values)
    return opt


@pytest.mark.parametrize('section, values, expected', [
    ('val', {'chunk_size': -1}, 'val.chunk_size must be an int >= 1 (or null), got -1'),
    ('val', {'query_chunk': 'big'}, "val.chunk_size must be an int >= 1 (or null), got 'big'"),
    ('val', {'tile': -3}, 'val.tile must be an int >= 1 (or null), got -3'),
    ('val', {'tile_overlap': -1}, 'val.tile_overlap must be an int >= 0, got -1'),
    ('val', {'val_frq': 5}, "val: unknown option(s) 'val_frq' (did you mean 'val_freq'?)"),
    ('train', {'grad_clipp': 1.0}, "train: unknown option(s) 'grad_clipp' (did you mean 'grad_clip'?)"),
    ('train', {'optim_g': {'type': 'Adam', 'lr': '1e-4'}},
     "train.optim_g.lr must be a number > 0, got '1e-4' (YAML reads 1e-4 as text: write !!float 1e-4 or 1.0e-4)"),
    ('train', {'total_iter': 0}, 'train.total_iter must be a whole number >= 1, got 0'),
    ('logger', {'print_freqq': 5}, "logger: unknown option(s) 'print_freqq' (did you mean 'print_freq'?)"),
    ('logger', {'print_freq': None}, 'logger.print_freq must be a whole number >= 1, got None'),
    ('path', {'pretrain_net_g': 'x.pth'}, "path: unknown option(s) 'pretrain_net_g'; valid: experiments_root,"),
])
def test_model_sections_are_checked_when_the_model_is_built(tiny_net_opt, tmp_path, section, values, expected):
    with pytest.raises(UserError) as info:
        BUILD_MODEL(_opt(tiny_net_opt, tmp_path, section, values))
    assert str(info.value).startswith(f'cannot build GaussianSRModel: {expected}') and '\n' not in str(info.value)


def test_counts_written_as_floats_are_accepted(tiny_net_opt, tmp_path):
    BUILD_MODEL(_opt(tiny_net_opt, tmp_path, 'logger', {'save_checkpoint_freq': 5e3}))


def test_testing_without_pretrained_weights_warns_in_one_line(tiny_net_opt, tmp_path, basicsr_log):
    BUILD_MODEL(_opt(tiny_net_opt, tmp_path, 'val', {}, is_train=False))
    assert 'path.pretrain_network_g is not set: testing a network with random weights' in basicsr_log.messages
