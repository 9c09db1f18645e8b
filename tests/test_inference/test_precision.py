"""gaussiansr_plugin/precision.py: the three inference precisions, on the upscale CLI and in BasicSR validation; the
default is the one the recorded measurements choose."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from basicsr.models import build_model
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference.upscaler import RenderPlan, render
from gaussiansr_plugin.precision import DEFAULT_PRECISION, PRECISIONS, check_precision, inference_precision
from shared_helpers import as_setup_step, cli, messages, model_opt


@pytest.fixture
def net(tiny_net_opt):
    torch.manual_seed(0)
    return GaussianSR(**{k: v for k, v in tiny_net_opt.items() if k != 'type'}).eval()


@pytest.fixture
def lq():
    return torch.from_numpy(skdata.astronaut()[100:124, 180:212].transpose(2, 0, 1).astype(np.float32) / 255)[None]


MEASURED = os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'logs', 'precision_h200_*')


def _psnr_drops(folder: str, kind: str, precision: str) -> dict:
    """PSNR-Y of ``precision`` minus fp32's per scale, from one recorded run (``crops``: race.py --score, ``photos``:
    evaluate.py)."""
    def psnr(p):
        record = json.load(open(os.path.join(folder, f'{kind}_{p}.json')))
        return {s: v['psnr'] for s, v in (record.get('scores') or record['results']).items()}
    reference, other = psnr('fp32'), psnr(precision)
    return {s: other[s] - reference[s] for s in reference}


def test_the_default_is_the_fastest_precision_within_a_hundredth_of_a_db():
    """docs/logs/precision_h200_*: the shipped model at each precision on a GPU, on the race's crops and on the whole
    held-out photos. The default keeps every scale within 0.01 dB of fp32; every faster precision misses somewhere."""
    folders = sorted(glob.glob(MEASURED))
    assert folders, 'no recorded precision measurements'
    latest = folders[-1]
    for kind in ('crops', 'photos'):
        assert all(abs(d) <= 0.01 for d in _psnr_drops(latest, kind, DEFAULT_PRECISION).values())
    for faster in PRECISIONS[PRECISIONS.index(DEFAULT_PRECISION) + 1:]:
        assert any(abs(d) > 0.01 for kind in ('crops', 'photos') for d in _psnr_drops(latest, kind, faster).values())


@pytest.mark.parametrize('precision', PRECISIONS)
def test_the_context_sets_and_restores_the_switches(precision):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    layer = torch.nn.Linear(4, 4)
    with inference_precision(precision, 'cpu'):
        assert torch.backends.cuda.matmul.allow_tf32 == torch.backends.cudnn.allow_tf32 == (precision == 'tf32')
        dtype = layer(torch.rand(2, 4)).dtype
    assert dtype == (torch.bfloat16 if precision == 'bf16' else torch.float32)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_fp32_is_the_plain_network_and_bf16_stays_close(net, lq):
    with torch.no_grad():
        exact = net.upsample(lq, (48, 64)).clamp(0, 1)
    fp32 = render(net, lq, (48, 64), RenderPlan(chunk_size=500))
    bf16 = render(net, lq, (48, 64), RenderPlan(chunk_size=500, precision='bf16'))
    assert torch.equal(fp32, exact) and bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32) and (bf16 - fp32).abs().max() < 0.05


@pytest.mark.parametrize('bad', ['fp16', 'FP32', None, 32])
def test_bad_precision_names(bad):
    with pytest.raises(ValueError, match=r'^precision must be one of fp32, tf32, bf16, got '):
        check_precision(bad)


def test_upscale_precision_flag(tmp_path, tiny_net_opt, net, lq, capsys):
    torch.save({'params': net.state_dict()}, tmp_path / 'tiny.pth')
    (tmp_path / 'tiny.yml').write_text(yaml.safe_dump({'network_g': tiny_net_opt}))
    src = str(tmp_path / 'in.png')
    cv2.imwrite(src, (lq[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8))
    args = [src, tmp_path / 'out.png', '--scale', 2, '--model', tmp_path / 'tiny.pth', '--device', 'cpu']
    assert cli('upscale', *args, '--precision', 'bf16') == 0
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (48, 64, 3)
    capsys.readouterr()
    assert cli('upscale', *args, '--precision', 'fp16') == 2
    assert "invalid choice: 'fp16'" in messages(capsys.readouterr().err)


def test_validation_precision_option(tiny_net_opt, tmp_path):
    opt = dict(model_opt(tiny_net_opt, tmp_path), val={'save_img': False, 'val_freq': 1, 'precision': 'bf16'})
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(1, 3, 10, 12), 'gt': torch.rand(1, 3, 20, 24), 'scale': torch.tensor([2.0])})
    model.test()
    assert model.output.dtype == torch.float32 and model.output.shape == (1, 3, 20, 24)
    opt['val']['precision'] = 'half'
    with pytest.raises(UserError, match=r"val\.precision must be one of fp32, tf32, bf16, got 'half'"):
        as_setup_step(build_model)(opt)
