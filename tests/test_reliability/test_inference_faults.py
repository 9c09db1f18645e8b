"""``gaussiansr upscale`` on awkward inputs: 1x1 / 3x3 images at any scale, CMYK / gray+alpha / palette / 1-bit
files, huge images refused from their header before decoding, and tiling that bounds the network's memory."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skdata

from gaussiansr_plugin.archs.gaussian_util import output_size
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.cli import upscale_cmd
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference import image_io
from gaussiansr_plugin.inference.image_header import read_header
from gaussiansr_plugin.inference.image_io import read_image
from gaussiansr_plugin.inference.upscaler import RenderPlan, render
from shared_helpers import cli, messages

SCALES = [0.5, 1, 1.5, 2, 2.4, 3.7, 4, 8, 12.5, 30]


@pytest.fixture
def tiny_model(tmp_path, tiny_net_opt):
    """A tiny GaussianSR checkpoint with ``tiny.yml`` beside it; (path, net)."""
    torch.manual_seed(0)
    net = GaussianSR(**{k: v for k, v in tiny_net_opt.items() if k != 'type'}).eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'tiny.pth')
    with open(tmp_path / 'tiny.yml', 'w') as f:
        yaml.safe_dump({'network_g': tiny_net_opt}, f)
    return str(tmp_path / 'tiny.pth'), net


def _photo(h, w):
    return np.ascontiguousarray(skdata.astronaut()[100:100 + h, 180:180 + w])  # RGB


@pytest.mark.parametrize('hw', [(1, 1), (3, 3)], ids=['1x1', '3x3'])
def test_one_and_three_pixel_images_at_every_scale(tmp_path, tiny_model, hw, capsys):
    model, _ = tiny_model
    src = str(tmp_path / 'in.png')
    cv2.imwrite(src, _photo(*hw)[..., ::-1])
    for scale in SCALES:
        out = str(tmp_path / f'out_{scale}.png')
        assert cli('upscale', src, out, '--scale', scale, '--model', model) == 0, capsys.readouterr().err
        assert cv2.imread(out).shape[:2] == output_size(hw, scale)
    for extra in (['--size', '7x5'], ['--scale', 2.4, '--tile', 1, '--tile-overlap', 0]):
        out = str(tmp_path / 'extra.png')
        assert cli('upscale', src, out, *extra, '--model', model) == 0, capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'extra.png')).shape[:2] == output_size(hw, 2.4)


def test_cmyk_gray_alpha_palette_and_bilevel_files(tmp_path, tiny_model, capsys):
    model, _ = tiny_model
    rgb = _photo(24, 32)
    image = Image.fromarray(rgb)
    image.convert('CMYK').save(tmp_path / 'cmyk.jpg', quality=95)
    image.convert('LA').save(tmp_path / 'la.png')
    image.convert('P').save(tmp_path / 'palette.png')
    image.convert('1').save(tmp_path / 'bilevel.png')

    cmyk = read_image(str(tmp_path / 'cmyk.jpg'))  # OpenCV converts CMYK (Adobe, inverted) to RGB
    assert cmyk.rgb.shape == (24, 32, 3) and np.abs(cmyk.rgb * 255 - rgb).mean() < 4
    la = read_image(str(tmp_path / 'la.png'))
    assert la.alpha is not None and np.allclose(la.rgb[..., 0], la.rgb[..., 2])
    palette = read_image(str(tmp_path / 'palette.png'))
    assert np.allclose(palette.rgb * 255, np.asarray(image.convert('P').convert('RGB')), atol=0.5)
    bilevel = read_image(str(tmp_path / 'bilevel.png'))
    assert bilevel.gray and set(np.unique(bilevel.rgb)) <= {0.0, 1.0}

    expected = {'cmyk.jpg': (48, 64, 3), 'la.png': (48, 64, 4), 'palette.png': (48, 64, 3), 'bilevel.png': (48, 64)}
    for name, shape in expected.items():
        out = tmp_path / f'out_{name}'.replace('.jpg', '.png')
        assert cli('upscale', tmp_path / name, out, '--scale', 2, '--model', model) == 0, capsys.readouterr().err
        assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == shape, name


@pytest.fixture
def huge_png(tmp_path):
    """A 20000x20000 bilevel PNG: 400 million pixels, about 50 kB on disk, written in well under a second."""
    path = tmp_path / 'huge.png'
    Image.new('1', (20000, 20000)).save(path)
    return str(path)


def test_huge_image_is_refused_from_its_header_before_decoding(tmp_path, tiny_model, huge_png, monkeypatch, capsys):
    model, _ = tiny_model

    def no_decode(*args, **kwargs):
        raise AssertionError('the image was decoded')

    monkeypatch.setattr(image_io, 'decode', no_decode)
    monkeypatch.setattr(upscale_cmd, 'load_model', no_decode)
    assert read_header(huge_png).size == (20000, 20000)
    cases = {
        ('--scale', 4, '--max-pixels', 1e9): 'error: output would be 80000x80000 = 6.4e+09 pixels, above --max-pixels',
        ('--scale', 4): f'error: {huge_png} is 20000x20000 = 4e+08 pixels, above --max-pixels 2e+08',
        ('--scale', 0.5): f'error: {huge_png} is 20000x20000 = 4e+08 pixels, above --max-pixels 2e+08',
        ('--size', '100x100'): f'error: {huge_png} is 20000x20000 = 4e+08 pixels, above --max-pixels 2e+08',
    }
    for args, expected in cases.items():
        out = tmp_path / 'out.png'
        assert cli('upscale', huge_png, out, *args, '--model', model) == 2
        err = capsys.readouterr().err
        assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_huge_image_in_a_folder_is_skipped_before_decoding(tmp_path, tiny_model, huge_png, monkeypatch, capsys):
    model, _ = tiny_model
    folder = tmp_path / 'in'
    folder.mkdir()
    os.replace(huge_png, folder / 'huge.png')
    cv2.imwrite(str(folder / 'small.png'), _photo(12, 10))
    decode = image_io.decode
    decoded = []
    monkeypatch.setattr(image_io, 'decode', lambda data, name, *rest: decoded.append(name) or decode(data, name, *rest))
    assert cli('upscale', folder, tmp_path / 'out', '--scale', 2, '--model', model, '--max-pixels', 1e8) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith('error: 1 of 2 image(s) failed, the first: '
                                                   f'{folder / "huge.png"} is 20000x20000')
    assert decoded == [str(folder / 'small.png')]
    assert osp.isfile(tmp_path / 'out' / 'small.png') and not osp.exists(tmp_path / 'out' / 'huge.png')


def test_header_size_follows_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the upright image is 20 high, 10 wide
    Image.fromarray(_photo(10, 20)).save(tmp_path / 'rot.jpg', exif=exif)
    assert read_header(str(tmp_path / 'rot.jpg')).size == (20, 10) == read_image(str(tmp_path / 'rot.jpg')).size
    (tmp_path / 'junk.png').write_bytes(b'junk')
    with pytest.raises(UserError, match='junk.png: not an image'):
        read_header(str(tmp_path / 'junk.png'))


def test_tiling_bounds_the_network_and_matches_untiled(tmp_path, tiny_model, capsys):
    """With ``--tile 32`` the encoder never sees more than (32 + 2*16)^2 LR pixels and no query chunk exceeds
    ``--chunk-size``, whatever the image size; the result equals the untiled one up to 8-bit rounding. (Odd LR
    sizes: no HR centre lies exactly on an LR pixel border, where float noise could pick the other nearest pixel.)"""
    model, net = tiny_model
    src = str(tmp_path / 'in.png')
    cv2.imwrite(src, _photo(161, 127)[..., ::-1])
    outputs = {}
    for name, extra in (('full', []), ('tiled', ['--tile', 32, '--tile-overlap', 16, '--chunk-size', 4096])):
        outputs[name] = str(tmp_path / f'{name}.png')
        assert cli('upscale', src, outputs[name], '--scale', 2.5, '--model', model, *extra) == 0, capsys.readouterr()
    full, tiled = (cv2.imread(p).astype(int) for p in outputs.values())
    assert full.shape == (402, 318, 3) and np.abs(full - tiled).max() <= 1

    encoder_sides, chunks = [], []
    net.encoder.register_forward_pre_hook(lambda module, args: encoder_sides.append(max(args[0].shape[-2:])))
    query = net._query
    net._query = lambda feat, kernels, side, coord, cell: chunks.append(coord.shape[1]) or query(
        feat, kernels, side, coord, cell)
    lq = torch.rand(1, 3, 301, 261)
    out = render(net, lq, output_size((301, 261), 2.5), RenderPlan(chunk_size=4096, tile=32, tile_overlap=16))
    assert out.shape == (1, 3, 752, 652)
    assert max(encoder_sides) <= 32 + 2 * 16 and max(chunks) <= 4096 and len(encoder_sides) == 10 * 9


@pytest.mark.parametrize('ext', ['gif', 'png', 'webp'])
def test_animated_images_say_that_only_the_first_frame_is_upscaled(tmp_path, tiny_model, capsys, ext):
    model, _ = tiny_model
    frames = [Image.new('RGB', (8, 6), (80 * i, 0, 0)) for i in range(3)]
    src, out = tmp_path / f'anim.{ext}', tmp_path / 'out.png'
    frames[0].save(src, save_all=True, append_images=frames[1:])
    assert cli('upscale', src, out, '--scale', 2, '--model', model) == 0
    assert messages(capsys.readouterr().err) == f'warning: {src} is animated: only its first frame is upscaled\n'
    assert cv2.imread(str(out)).shape == (12, 16, 3)
