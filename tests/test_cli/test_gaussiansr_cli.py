"""``gaussiansr upscale | profile | show | demo`` on CPU with a tiny network: outputs, formats and bad input."""
import glob
import math
import os
import re
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skdata
from tqdm import tqdm

from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.inference import checkpoint
from gaussiansr_plugin.inference.progress import ChunkProgress, count_chunks
from gaussiansr_plugin.inference.upscaler import RenderPlan, render
from shared_helpers import cli

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain pickle would run the command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


def assert_one_error_line(code, err, *must_not_exist):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert 'Traceback' not in err
    for path in must_not_exist:
        assert not osp.exists(path), path


@pytest.fixture
def tiny_model(tmp_path, tiny_net_opt):
    """A tiny GaussianSR checkpoint (BasicSR format) with its options in ``tiny.yml`` beside it."""
    torch.manual_seed(0)
    opt = {k: v for k, v in tiny_net_opt.items() if k != 'type'}
    net = GaussianSR(**opt).eval()
    path = tmp_path / 'tiny.pth'
    torch.save({'params': net.state_dict()}, path)
    with open(tmp_path / 'tiny.yml', 'w') as f:
        yaml.safe_dump({'network_g': tiny_net_opt}, f)
    return str(path), net


@pytest.fixture
def photo():
    """A 24x32 crop of a real photo, RGB uint8."""
    return np.ascontiguousarray(skdata.astronaut()[100:124, 180:212])


def _write(path, pixels):
    assert cv2.imwrite(str(path), pixels)
    return str(path)


def test_upscale_rgb_png_matches_the_network(tmp_path, tiny_model, photo, capsys):
    model, net = tiny_model
    src, dst = _write(tmp_path / 'in.png', photo[..., ::-1]), str(tmp_path / 'out.png')
    assert cli('upscale', src, dst, '--scale', 2, '--model', model, '--device', 'cpu') == 0
    assert 'wrote' in capsys.readouterr().out
    out = cv2.imread(dst, cv2.IMREAD_UNCHANGED)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    lq = torch.from_numpy(photo.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = net.upsample(lq, (48, 64)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out[..., ::-1], np.round(ref * 255).astype(np.uint8))
    assert [p for p in os.listdir(tmp_path) if p.endswith('.tmp')] == []


@pytest.mark.parametrize('tile', [None, 16])
def test_render_progress_counts_every_chunk(tiny_model, photo, tile, monkeypatch):
    _, net = tiny_model
    lq = torch.from_numpy(photo.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    plan = RenderPlan(chunk_size=100, tile=tile, tile_overlap=4)
    update = tqdm.update
    monkeypatch.setattr(tqdm, 'update', lambda self, n=1: update(self, n) or True)  # as when tqdm redraws
    progress = ChunkProgress('test')
    torch.testing.assert_close(render(net, lq, (61, 83), plan, progress), render(net, lq, (61, 83), plan))
    chunks, tiles = count_chunks(net, lq, (61, 83), 100, tile, 4)
    assert progress.bar.n == progress.bar.total == chunks and tiles == (1 if tile is None else 4)
    # tiles of 41x41, 41x42, 20x41 and 20x42 HR pixels: 17 + 18 + 9 + 9 chunks
    assert chunks == (math.ceil(61 * 83 / 100) if tile is None else 53)
    progress.close()


def test_upscale_shows_progress_and_time(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    src, dst = _write(tmp_path / 'in.png', photo), str(tmp_path / 'out.png')
    assert cli('upscale', src, dst, '--scale', 2, '--model', model, '--chunk-size', 256) == 0
    captured = capsys.readouterr()
    assert re.fullmatch(r'wrote \S+ \(64x48 from 32x24\) in \d+\.\d s\n', captured.out), captured.out
    assert '64x48' in captured.err and '/12 [' in captured.err and 'chunk' in captured.err


def test_size_of_another_aspect_ratio_and_keep_aspect(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    src, dst = _write(tmp_path / 'in.png', photo), tmp_path / 'out.png'
    assert cli('upscale', src, dst, '--size', '40x40', '--model', model) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert warnings == [f'warning: {src}: --size 40x40 changes the aspect ratio (32x24 is 1.33:1, the output 1:1); '
                        '--keep-aspect fits the image inside 40x40 instead']
    assert cli('upscale', src, dst, '--size', '40x40', '--keep-aspect', '--model', model) == 0
    assert 'warning' not in capsys.readouterr().err and cv2.imread(str(dst)).shape == (30, 40, 3)
    assert cli('upscale', src, dst, '--size', '43x32', '--model', model) == 0  # x1.33 within rounding
    assert 'warning' not in capsys.readouterr().err
    assert_one_error_line(cli('upscale', src, tmp_path / 'new.png', '--scale', 2, '--keep-aspect'),
                          capsys.readouterr().err, tmp_path / 'new.png')


def test_upscale_16bit_gray_rgba_jpeg(tmp_path, tiny_model, photo):
    model, _ = tiny_model
    bgr = photo[..., ::-1]
    cases = {
        'rgb16.png': (bgr.astype(np.uint16) * 257 + 7, (60, 80, 3), np.uint16),
        'gray.png': (bgr[..., 1], (60, 80), np.uint8),
        'gray16.tif': (bgr[..., 1].astype(np.uint16) * 250, (60, 80), np.uint16),
        'rgba.png': (np.dstack([bgr, np.tile(np.linspace(0, 255, 32).astype(np.uint8),
                                             (24, 1))]), (60, 80, 4), np.uint8),
        'photo.jpg': (bgr, (60, 80, 3), np.uint8),
        'photo.webp': (bgr, (60, 80, 3), np.uint8),
    }
    for name, (pixels, shape, dtype) in cases.items():
        src, dst = _write(tmp_path / name, pixels), str(tmp_path / f'out_{name}')
        assert cli('upscale', src, dst, '--scale', 2.5, '--model', model) == 0, name
        out = cv2.imread(dst, cv2.IMREAD_UNCHANGED)
        assert out.shape == shape and out.dtype == dtype, name
    out16 = cv2.imread(str(tmp_path / 'out_rgb16.png'), cv2.IMREAD_UNCHANGED)
    assert np.any(out16 % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up
    alpha = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1)).astype(np.float32) / 255
    expected = np.round(cv2.resize(alpha, (80, 60), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out_rgba.png'), cv2.IMREAD_UNCHANGED)[..., 3], expected)


def test_upscale_jpeg_exif_orientation_and_format_change(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    img = Image.fromarray(photo)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    src = str(tmp_path / 'rotated.jpg')
    img.save(src, exif=exif, quality=95)
    rgba_16 = _write(tmp_path / 'rgba16.png', np.full((24, 32, 4), 40000, np.uint16))
    assert cli('upscale', src, tmp_path / 'out.png', '--scale', 2, '--model', model) == 0
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (64, 48, 3)  # upright: width and height swapped
    assert cli('upscale', rgba_16, tmp_path / 'out.jpg', '--scale', 2, '--model', model) == 0
    err = capsys.readouterr().err
    assert 'alpha dropped' in err and 'uint8' in err
    assert cv2.imread(str(tmp_path / 'out.jpg'), cv2.IMREAD_UNCHANGED).shape == (48, 64, 3)


@pytest.mark.parametrize('size_args, shape', [(('--size', '37x23'), (23, 37)), (('--scale', '2.7'), (35, 46)),
                                              (('--scale', '0.6'), (8, 10))])
def test_upscale_exact_output_size(tmp_path, tiny_model, photo, size_args, shape):
    model, _ = tiny_model
    src = _write(tmp_path / 'in.png', np.ascontiguousarray(photo[:13, :17]))
    assert cli('upscale', src, tmp_path / 'out.png', *size_args, '--model', model, '--tile', 8) == 0
    assert cv2.imread(str(tmp_path / 'out.png')).shape[:2] == shape


def test_upscale_folder_with_progress_bar(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    src = tmp_path / 'in'
    (src / 'sub').mkdir(parents=True)
    _write(src / 'a.png', photo)
    _write(src / 'b.jpg', photo)
    _write(src / 'sub' / 'c.png', photo[:, :20])
    (src / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    assert cli('upscale', src, out, '--scale', 1.5, '--model', model) == 0
    captured = capsys.readouterr()
    assert 'upscale' in captured.err and '3/3' in captured.err  # tqdm
    assert 'wrote 3 image(s)' in captured.out
    assert sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file()) == ['a.png', 'b.jpg', 'sub/c.png']
    assert cv2.imread(str(out / 'sub' / 'c.png')).shape == (36, 30, 3)


def test_upscale_folder_never_writes_outside_out(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    src, out, outside = tmp_path / 'in', tmp_path / 'out', tmp_path / 'outside'
    for folder in (src / 'sub', out, outside):
        folder.mkdir(parents=True)
    _write(src / 'a.png', photo)
    _write(src / 'sub' / 'b.png', photo)
    os.symlink(tmp_path, src / 'loop')  # a link to a folder (here: IN's parent) is not followed
    os.symlink(outside, out / 'sub')  # OUT/sub leads outside OUT
    assert cli('upscale', src, out, '--scale', 2, '--model', model) == 2
    err = capsys.readouterr().err
    assert 'outside' in err.splitlines()[-1] and err.splitlines()[-1].startswith('error: ')
    assert os.listdir(outside) == []
    assert osp.isfile(out / 'a.png')
    secret = _write(tmp_path / 'secret.png', photo)
    os.symlink(secret, src / 'link.png')  # a linked file must stay inside IN
    fresh = tmp_path / 'fresh'
    code = cli('upscale', src, fresh, '--scale', 2, '--model', model)
    assert_one_error_line(code, capsys.readouterr().err, fresh)


def _bad_input_cases(tmp, model, src):
    """(name, arguments, file that must not appear) for every bad input."""
    out = str(tmp / 'out.png')
    garbage = tmp / 'garbage.png'
    garbage.write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(64))
    (tmp / 'empty.png').write_bytes(b'')
    (tmp / 'text.pth').write_text('not a checkpoint\n')
    edsr = ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    torch.save({'params': edsr.state_dict()}, tmp / 'edsr.pth')
    torch.save({'iter': 5, 'epoch': 0, 'optimizers': [], 'schedulers': []}, tmp / 'train.state')
    base = ['--model', model]
    return [
        ('missing input', ['upscale', tmp / 'nope.png', out, '--scale', 2] + base),
        ('corrupt input', ['upscale', garbage, out, '--scale', 2] + base),
        ('empty input', ['upscale', tmp / 'empty.png', out, '--scale', 2] + base),
        ('scale 0', ['upscale', src, out, '--scale', 0] + base),
        ('scale negative', ['upscale', src, out, '--scale=-2'] + base),
        ('scale nan', ['upscale', src, out, '--scale', 'nan'] + base),
        ('scale inf', ['upscale', src, out, '--scale', 'inf'] + base),
        ('scale text', ['upscale', src, out, '--scale', 'two'] + base),
        ('scale and size', ['upscale', src, out, '--scale', 2, '--size', '10x10'] + base),
        ('no scale', ['upscale', src, out] + base),
        ('size malformed', ['upscale', src, out, '--size', '640'] + base),
        ('size zero', ['upscale', src, out, '--size', '0x10'] + base),
        ('absurd size', ['upscale', src, out, '--scale', 1e6] + base),
        ('above max pixels', ['upscale', src, out, '--scale', 2, '--max-pixels', 100] + base),
        ('unknown device', ['upscale', src, out, '--scale', 2, '--device', 'tpu'] + base),
        ('bad output format', ['upscale', src, tmp / 'out.xyz', '--scale', 2] + base),
        ('model not found', ['upscale', src, out, '--scale', 2, '--model', tmp / 'nope.pth']),
        ('not a checkpoint', ['upscale', src, out, '--scale', 2, '--model', tmp / 'text.pth']),
        ('other architecture', ['upscale', src, out, '--scale', 2, '--model', tmp / 'edsr.pth']),
        ('training state', ['upscale', src, out, '--scale', 2, '--model', tmp / 'train.state']),
        ('bad config', ['upscale', src, out, '--scale', 2, '--config', tmp / 'nope.yml'] + base),
        ('bad tile', ['upscale', src, out, '--scale', 2, '--tile', 0] + base),
    ]


def test_upscale_bad_input_matrix(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    src = _write(tmp_path / 'in.png', photo)
    for name, args in _bad_input_cases(tmp_path, model, src):
        code = cli(*args)
        err = capsys.readouterr().err
        assert_one_error_line(code, err, tmp_path / 'out.png', tmp_path / 'out.xyz')
        assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')], name
        if name == 'other architecture':
            assert 'missing encoder.conv_first.weight' in err and 'unexpected conv_first.weight' in err, err
        if name in ('absurd size', 'above max pixels'):
            assert '--max-pixels' in err


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    marker = tmp_path / 'PWNED'
    evil = tmp_path / 'evil.pth'
    torch.save({'params': RunsCode(f'touch {marker}')}, evil)
    src, out = _write(tmp_path / 'in.png', photo), tmp_path / 'out.png'
    code = cli('upscale', src, out, '--scale', 2, '--model', evil)
    err = capsys.readouterr().err
    assert_one_error_line(code, err, out, marker)
    assert 'refusing to load' in err and 'system' in err
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 64)  # OpenCV's own messages must not reach stderr either
    for bad in (['--model', str(evil), src], ['--model', model, str(garbage)]):
        cmd = [sys.executable, '-m', 'gaussiansr_plugin.cli.gaussiansr_cli', 'upscale', bad[2], str(out),
               '--scale', '2', *bad[:2]]
        proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
        assert_one_error_line(proc.returncode, proc.stderr, out, marker)


@pytest.mark.skipif(not osp.isfile(checkpoint.DEFAULT_MODEL), reason='no shipped checkpoint')
def test_shipped_model_is_the_default(tmp_path, photo, capsys):
    src, out = _write(tmp_path / 'in.png', photo), tmp_path / 'out.png'
    assert cli('upscale', src, out, '--size', '40x30') == 0
    assert cv2.imread(str(out)).shape == (30, 40, 3)
    model = checkpoint.load_model()
    assert model.param_key == 'params_ema' and model.options_source == 'the checkpoint'


def test_missing_shipped_model_and_cuda(tmp_path, photo, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, 'DEFAULT_MODEL', str(tmp_path / 'weights' / 'missing.pth'))
    src, out = _write(tmp_path / 'in.png', photo), tmp_path / 'out.png'
    code = cli('upscale', src, out, '--scale', 2)
    err = capsys.readouterr().err
    assert_one_error_line(code, err, out)
    assert '--model' in err
    for args in (['show', '--out', tmp_path / 'figs'], ['demo', '--pretrained', '--data', tmp_path / 'data']):
        assert_one_error_line(cli(*args), capsys.readouterr().err, tmp_path / 'figs', tmp_path / 'data')
    if not torch.cuda.is_available():
        assert_one_error_line(cli('upscale', src, out, '--scale', 2, '--device', 'cuda'), capsys.readouterr().err, out)


def test_profile_prints_a_table(tiny_model, monkeypatch, capsys):
    model, _ = tiny_model
    assert cli('profile', '--model', model, '--scales', 2, 3.5, '--lr-size', 16, '--repeats', 1) == 0
    out = capsys.readouterr().out
    for text in ('| encoder |', '| Gaussians |', '| decoder |', '| total | 15,011', '| x2 | 32x32 |',
                 '| x3.5 | 56x56 |', 'GFLOPs', 'latency (ms)', 'mmengine'):
        assert text in out, text
    import mmengine.analysis

    def broken(*args, **kwargs):
        raise RuntimeError('unsupported op\nmore detail')

    monkeypatch.setattr(mmengine.analysis, 'FlopAnalyzer', broken)
    assert cli('profile', '--model', model, '--scales', 2, '--lr-size', 8, '--repeats', 1) == 0
    out = capsys.readouterr().out
    assert '| x2 | 16x16 | n/a |' in out and 'could not trace the model (RuntimeError: unsupported op)' in out


def test_show_writes_three_figures(tmp_path, tiny_model, photo, capsys):
    model, _ = tiny_model
    out = tmp_path / 'figs'
    assert cli('show', '--model', model, '--out', out, '--lr-size', 24, '--scales', 2, 3.5) == 0  # chelsea
    assert cli('show', '--model', model, '--out', out, '--image', _write(tmp_path / 'a.png', photo), '--image',
               _write(tmp_path / 'b.png', photo[::-1]), '--scales', 1.5) == 0
    assert capsys.readouterr().out.count('wrote') == 6
    for name in ('bank.png', 'choice_map.png', 'compare.png'):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, name


def test_demo_options_copy_matches_the_packaged_template():
    from gaussiansr_plugin.cli import demo_cmd
    with open(demo_cmd.TEMPLATE) as f, open(osp.join(ROOT, 'options', 'demo_train.yml')) as g:
        assert f.read() == g.read()
    with open(osp.join(ROOT, 'options', 'demo_test.yml')) as f:
        test_opt = yaml.safe_load(f)
    with open(demo_cmd.TEMPLATE) as f:
        train_opt = yaml.safe_load(f)
    assert test_opt['network_g'] == train_opt['network_g']
    assert train_opt['name'] in test_opt['path']['pretrain_network_g']


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_demo_setup_mistake_is_one_line_without_a_bar(tmp_path, monkeypatch, capsys):
    from gaussiansr_plugin.cli import demo_cmd
    options = demo_cmd.demo_options
    monkeypatch.setattr(demo_cmd, 'demo_options', lambda *args: dict(options(*args), num_gpu=1))
    monkeypatch.chdir(tmp_path)
    assert cli('demo', '--iters', 2) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith('GaussianSR demo: training 2 iterations on cpu')
    assert 'training:' not in captured.err and 'Traceback' not in captured.err
    assert captured.err.splitlines()[-1].startswith('error: num_gpu: 1 asks for CUDA GPUs'), captured.err


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.cli.gaussiansr_cli', 'demo', '--iters', '4'],
                          cwd=tmp_path,
                          env=ENV,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '| x3 |' in proc.stdout and '| x2.5 |' in proc.stdout, proc.stdout
    assert proc.stdout.startswith('GaussianSR demo: training 4 iterations on cpu'), proc.stdout
    assert 'Disable distributed' not in proc.stdout
    # the console: a header and the bar; the options, the network and BasicSR's log lines: the log file only
    assert 'training: 100%' in proc.stderr and '4/4' in proc.stderr
    for text in ('network_g', 'Network: GaussianSR', 'End of training', 'Warning'):  # no tqdm clamping warning
        assert text not in proc.stderr
    log = open(glob.glob(str(tmp_path / 'experiments' / 'demo_*' / 'train_demo_*.log'))[0]).read()
    for text in ('network_g', 'Network: GaussianSR', 'End of training'):
        assert text in log
    experiments = list((tmp_path / 'experiments').glob('demo_*/models/net_g_latest.pth'))
    assert len(experiments) == 1
    for scale in ('x3', 'x2.5'):
        for label in ('lr', 'bicubic', 'gaussiansr'):
            assert (tmp_path / 'results' / 'demo' / f'chelsea_{scale}_{label}.png').is_file()
    assert len(list((tmp_path / 'datasets' / 'demo' / 'train').glob('*.png'))) == 4
