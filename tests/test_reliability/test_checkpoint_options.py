"""Every checkpoint carries the options that change its outputs, and every loading path adopts them or refuses in
one line naming the option and both values: ``pretrain_network_g`` (test, training, resume), ``gaussiansr upscale
--model`` and ``encoder.pretrain_path``."""
import shutil

import pytest
import torch
import yaml

from basicsr.models import build_model
from basicsr.utils.misc import check_resume
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference.checkpoint import DEFAULT_MODEL, load_model
from shared_helpers import as_setup_step, model_opt

BUILD_MODEL = as_setup_step(build_model)
SHIPPED_NET = yaml.safe_load(open(DEFAULT_MODEL.replace('.pth', '.yml')))['network_g']


def _test_opt(network_g, pretrain, tmp_path, param_key='params_ema'):
    return {'name': 'load', 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'dist': False, 'is_train': False,
            'rank': 0, 'network_g': network_g, 'val': {'save_img': False},
            'path': {'pretrain_network_g': pretrain, 'param_key_g': param_key, 'strict_load_g': True,
                     'models': str(tmp_path)}}


def test_shipped_checkpoint_carries_its_options_and_loads_without_its_yml(tmp_path):
    saved = torch.load(DEFAULT_MODEL, weights_only=True)
    assert set(saved) == {'params_ema', 'output_options', 'network_g'}
    assert saved['output_options']['gaussian_norm'] == 'density' and saved['network_g'] == SHIPPED_NET
    copy = tmp_path / 'copied_without_yml.pth'
    shutil.copy(DEFAULT_MODEL, copy)
    model = load_model(str(copy))
    assert model.options_source == 'the checkpoint' and model.net.gaussian_norm == 'density'


@pytest.mark.parametrize('change, message', [
    ({'gaussian_norm': 'peak'}, "gaussian_norm: checkpoint 'density', network 'peak'"),
    ({'residual': 'none'}, "residual: checkpoint 'bicubic', network 'none'"),
    ({'eval_selection': 'soft'}, "eval_selection: checkpoint 'argmax', network 'soft'"),
])
def test_shipped_checkpoint_under_other_options_is_refused_in_basicsr_test(tmp_path, change, message):
    with pytest.raises(UserError) as info:
        BUILD_MODEL(_test_opt(dict(SHIPPED_NET, **change), DEFAULT_MODEL, tmp_path))
    assert str(info.value) == (f'cannot build GaussianSRModel: path.pretrain_network_g {DEFAULT_MODEL} was trained '
                               f'with other network_g options ({message}); set them in network_g as the checkpoint '
                               'has them')


def test_shipped_checkpoint_loads_in_basicsr_test_with_its_options_and_param_key(tmp_path):
    model = BUILD_MODEL(_test_opt(SHIPPED_NET, DEFAULT_MODEL, tmp_path))
    assert torch.equal(model.net_g.bank.raw, torch.load(DEFAULT_MODEL, weights_only=True)['params_ema']['bank.raw'])
    with pytest.raises(UserError, match="has no 'params' entry .*; set path.param_key_g: params_ema"):
        BUILD_MODEL(_test_opt(SHIPPED_NET, DEFAULT_MODEL, tmp_path, param_key='params'))


def test_upscale_model_adopts_recorded_options_or_refuses_a_config_that_differs(tmp_path):
    peak_trained = GaussianSR(gaussian_norm='peak')  # the paper default's layout, trained under other output options
    bare = tmp_path / 'bare.pth'  # output options, no network_g, no yml: the paper default adopts them
    torch.save({'params_ema': peak_trained.state_dict(), 'output_options': peak_trained.output_options()}, bare)
    model = load_model(str(bare))
    assert model.net.gaussian_norm == 'peak' and 'output options recorded in the checkpoint' in model.options_source
    config = tmp_path / 'nores.yml'
    config.write_text(yaml.safe_dump({'network_g': dict(SHIPPED_NET, residual='none')}))
    with pytest.raises(UserError, match=r"trained with other options than .*nores.yml gives \(residual: checkpoint "
                                        r"'bicubic', network 'none'\)"):
        load_model(DEFAULT_MODEL, config=str(config))


def _trained_checkpoint(tiny_net_opt, tmp_path, **network):
    model = build_model(model_opt(dict(tiny_net_opt, **network), tmp_path))
    model.save_network(model.net_g, 'net_g', 5)
    return model, tmp_path / 'net_g_5.pth'


def test_saved_checkpoints_carry_network_g_and_rebuild_without_a_yml(tiny_net_opt, tmp_path):
    model, path = _trained_checkpoint(tiny_net_opt, tmp_path, gaussian_norm='peak')
    saved = torch.load(path, weights_only=True)
    assert saved['network_g'] == dict(tiny_net_opt, gaussian_norm='peak') and type(saved['network_g']) is dict
    loaded = load_model(str(path))
    assert loaded.options_source == 'the checkpoint' and loaded.net.gaussian_norm == 'peak'


def test_resume_under_other_output_options_is_refused(tiny_net_opt, tmp_path):
    _trained_checkpoint(tiny_net_opt, tmp_path, radius=2)
    opt = dict(model_opt(tiny_net_opt, tmp_path), network_g=dict(tiny_net_opt, radius=3))
    opt['path'].update(resume_state=str(tmp_path / '5.state'), models=str(tmp_path))
    check_resume(opt, 5)  # what BasicSR does on --auto_resume: pretrain_network_g becomes models/net_g_5.pth
    with pytest.raises(UserError, match=r'net_g_5.pth was trained with other network_g options \(radius: checkpoint '
                                        r'2, network 3\)'):
        BUILD_MODEL(opt)


def test_encoder_pretrain_path_with_other_encoder_options_is_refused(tiny_net_opt, tmp_path):
    _, path = _trained_checkpoint(tiny_net_opt, tmp_path)
    encoder = dict(tiny_net_opt['encoder'], pretrain_path=str(path))
    assert GaussianSR(encoder=encoder, bank_size=4, mlp_hidden=[8])  # same encoder options: loads
    with pytest.raises(ValueError, match=r'was trained with other encoder options \(res_scale: checkpoint 1.0, '
                                         r'network 0.5\)'):
        GaussianSR(encoder=dict(encoder, res_scale=0.5))


def test_a_checkpoint_without_a_record_loads_with_one_warning(tiny_net_opt, tmp_path, basicsr_log):
    net = GaussianSR(**{k: v for k, v in tiny_net_opt.items() if k != 'type'})
    path = tmp_path / 'old.pth'
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, path)
    opt = dict(model_opt(tiny_net_opt, tmp_path, ema_decay=0.9))
    opt['path']['pretrain_network_g'] = str(path)
    BUILD_MODEL(opt)  # net_g and net_g_ema both load the file
    warned = [m for m in basicsr_log.messages if 'records no output options' in m]
    assert warned == [f'path.pretrain_network_g {path} records no output options (an older checkpoint): assuming '
                      'network_g gives the options it was trained with']
