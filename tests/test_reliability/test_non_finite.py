"""Non-finite weights are refused when loaded, non-finite outputs before anything is written."""
import cv2
import numpy as np
import pytest
import torch

from basicsr.models import build_model
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference.checkpoint import load_model
from shared_helpers import as_setup_step, cli, messages, model_opt

BUILD_MODEL = as_setup_step(build_model)


def _poisoned(tiny_checkpoint, tmp_path, value):
    path, net = tiny_checkpoint
    saved = torch.load(path, weights_only=True)
    saved['params']['decoder.layers.0.bias'][3] = value
    poisoned = tmp_path / f'poisoned_{value}.pth'
    torch.save(saved, poisoned)
    return str(poisoned)


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_weights_are_refused_on_every_loading_path(tiny_checkpoint, tiny_net_opt, tmp_path, value):
    assert 'decoder.layers.0.bias' in tiny_checkpoint[1].state_dict()
    path = _poisoned(tiny_checkpoint, tmp_path, value)
    with pytest.raises(UserError, match=r'holds non-finite weights \(NaN or inf\) in decoder.layers.0.bias: a '
                                        'diverged or corrupt checkpoint'):
        load_model(path)
    opt = model_opt(tiny_net_opt, tmp_path)
    opt['path']['pretrain_network_g'] = path
    with pytest.raises(UserError, match='non-finite weights .* in decoder.layers.0.bias'):
        BUILD_MODEL(opt)
    saved = torch.load(path, weights_only=True)
    saved['params']['encoder.conv_first.weight'][0, 0, 0, 0] = value
    torch.save(saved, path)
    with pytest.raises(ValueError, match=r'encoder.pretrain_path .* holds non-finite weights \(NaN or inf\) in '
                                         'conv_first.weight'):
        GaussianSR(encoder=dict(tiny_net_opt['encoder'], pretrain_path=path))


def test_non_finite_outputs_are_refused_before_writing(tiny_checkpoint, tmp_path, capsys):
    saved = torch.load(tiny_checkpoint[0], weights_only=True)
    saved['params']['decoder.layers.0.weight'].fill_(3e38)  # finite weights whose outputs overflow
    path = tmp_path / 'overflows.pth'
    torch.save(saved, path)
    src, out = tmp_path / 'in.png', tmp_path / 'out.png'
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8))
    assert cli('upscale', src, out, '--scale', 2, '--model', path, '--device', 'cpu') == 2
    err = messages(capsys.readouterr().err)
    assert err == ('error: the network produced non-finite values (NaN or inf): the model is broken (weights too '
                   'large or a diverged training); nothing was written\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in.png', 'overflows.pth', 'tiny.pth']
