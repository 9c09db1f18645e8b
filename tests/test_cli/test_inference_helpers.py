"""Helpers behind the ``gaussiansr`` commands: image I/O, checkpoint loading, output paths, OOM fallback."""
import os

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference import image_io
from gaussiansr_plugin.inference.batch import folder_jobs, plan_jobs
from gaussiansr_plugin.inference.checkpoint import load_model
from gaussiansr_plugin.inference.figures import ellipse_axes
from gaussiansr_plugin.inference.upscaler import RenderPlan, render, resolve_device, target_size


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_matches_opencv_default_read(tmp_path, orientation):
    pixels = np.zeros((10, 16, 3), np.uint8)
    pixels[:3, :5] = (255, 0, 0)  # a red corner shows any flip or rotation
    pixels[7:, 10:] = (0, 0, 255)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = str(tmp_path / 'o.jpg')
    img.save(path, exif=exif, quality=100)
    expected = cv2.imread(path)[..., ::-1]  # OpenCV applies the orientation without IMREAD_UNCHANGED
    got = np.round(image_io.read_image(path).rgb * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert got.shape[:2] == ((16, 10) if orientation >= 5 else (10, 16))


def test_pixel_types_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for name, pixels in {
            'u8.png': rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
            'u16.png': rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16),
            'g16.tif': rng.integers(0, 65536, (5, 7), dtype=np.uint16),
            'f32.tif': rng.random((5, 7, 3), dtype=np.float32),
    }.items():
        path = str(tmp_path / name)
        assert cv2.imwrite(path, pixels)
        picture = image_io.read_image(path)
        assert picture.dtype == pixels.dtype.name and picture.gray == (pixels.ndim == 2)
        assert image_io.write_image(str(tmp_path / f'copy_{name}'), picture) == []
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / f'copy_{name}'), cv2.IMREAD_UNCHANGED), pixels)
    picture = image_io.read_image(str(tmp_path / 'f32.tif'))
    assert image_io.to_pixels(picture, '.png')[0].dtype == np.uint16  # best the format stores


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / 'out.png'
    target.write_bytes(b'old')

    def fail(*args):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(UserError, match='No space left'):
        image_io.write_bytes_atomic(str(target), b'new')
    monkeypatch.undo()

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'fsync', interrupt)
    with pytest.raises(KeyboardInterrupt):
        image_io.write_bytes_atomic(str(target), b'new')
    assert os.listdir(tmp_path) == ['out.png'] and target.read_bytes() == b'old'


def test_folder_jobs_reject_out_inside_in_and_same_folder(tmp_path):
    src = tmp_path / 'in'
    (src / 'x2').mkdir(parents=True)
    cv2.imwrite(str(src / 'a.png'), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(src / 'x2' / 'a.png'), np.zeros((4, 4, 3), np.uint8))  # an earlier output
    with pytest.raises(UserError, match='is inside the input folder'):
        folder_jobs(str(src), str(src / 'x2'))
    with pytest.raises(UserError, match='must differ'):
        folder_jobs(str(src), str(src) + '/')
    with pytest.raises(UserError, match='is a file'):
        plan_jobs(str(src), str(src / 'a.png'))
    assert plan_jobs(str(src / 'a.png'), str(src / 'x2'))[0] == [(str(src / 'a.png'), str(src / 'x2' / 'a.png'))]
    for same in (str(src / 'a.png'), str(src)):  # the input itself, also as OUT = its folder
        with pytest.raises(UserError, match='input file itself'):
            plan_jobs(str(src / 'a.png'), same)


def _save(path, net, **extra):
    torch.save({'params': net.state_dict(), **extra}, path)
    return str(path)


def test_network_options_come_from_config_checkpoint_sidecar_or_experiment(tmp_path, tiny_net_opt):
    opt = {k: v for k, v in tiny_net_opt.items() if k != 'type'}
    net = GaussianSR(**opt)
    embedded = load_model(_save(tmp_path / 'embedded.pth', net, network_g=tiny_net_opt))
    assert embedded.options_source == 'the checkpoint'
    plain = _save(tmp_path / 'plain.pth', net)
    with pytest.raises(UserError, match='paper default'):
        load_model(plain)
    (tmp_path / 'net.yml').write_text(yaml.safe_dump(tiny_net_opt))  # the options alone, no network_g
    assert load_model(plain, config=str(tmp_path / 'net.yml')).options_source.endswith('net.yml')
    (tmp_path / 'plain.yml').write_text(yaml.safe_dump({'name': 'x', 'network_g': tiny_net_opt}))
    assert load_model(plain).options_source.endswith('plain.yml')
    models = tmp_path / 'experiments' / 'run' / 'models'
    models.mkdir(parents=True)
    (models.parent / 'train_run.yml').write_text(yaml.safe_dump({'network_g': tiny_net_opt}))
    assert load_model(_save(models / 'net_g_latest.pth', net)).options_source.endswith('train_run.yml')
    wrong = dict(tiny_net_opt, type='EDSR')
    with pytest.raises(UserError, match="'EDSR' .* is not GaussianSR"):
        load_model(plain, config=str(_dump(tmp_path / 'wrong.yml', wrong)))
    with pytest.raises(UserError, match='cannot build GaussianSR'):
        load_model(plain, config=str(_dump(tmp_path / 'bad.yml', dict(tiny_net_opt, radius=99))))


def test_output_options_recorded_in_a_checkpoint_must_match(tmp_path, tiny_net_opt):
    """Weights of the same shapes, other behaviour: a peak-trained checkpoint under a density yml is refused."""
    opt = dict({k: v for k, v in tiny_net_opt.items() if k != 'type'}, gaussian_norm='peak')
    net = GaussianSR(**opt)
    path = _save(tmp_path / 'peak.pth', net, output_options=net.output_options())
    peak = _dump(tmp_path / 'peak.yml', dict(tiny_net_opt, gaussian_norm='peak'))
    assert load_model(path, config=str(peak)).net.gaussian_norm == 'peak'
    density = _dump(tmp_path / 'density.yml', dict(tiny_net_opt, gaussian_norm='density', radius=2))
    with pytest.raises(UserError, match=r"other options .*gaussian_norm: checkpoint 'peak', network 'density'; "
                                        r"radius: checkpoint 3, network 2"):
        load_model(path, config=str(density))


def _dump(path, opt):
    path.write_text(yaml.safe_dump({'network_g': opt}))
    return path


def test_ema_weights_are_preferred_and_ddp_prefix_stripped(tmp_path, tiny_net_opt):
    opt = {k: v for k, v in tiny_net_opt.items() if k != 'type'}
    torch.manual_seed(0)
    net, ema = GaussianSR(**opt), GaussianSR(**opt)
    torch.save(
        {
            'params': net.state_dict(),
            'params_ema': {
                f'module.{k}': v
                for k, v in ema.state_dict().items()
            },
            'network_g': tiny_net_opt
        }, tmp_path / 'ema.pth')
    model = load_model(str(tmp_path / 'ema.pth'))
    assert model.param_key == 'params_ema' and not model.net.training
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[key], value)


def test_target_size_and_devices():
    assert target_size((13, 17), 2.7, None, 1e8) == (35, 46)
    assert target_size((13, 17), 99.0, (5, 6), 30) == (5, 6)
    with pytest.raises(UserError, match='max-pixels'):
        target_size((100, 100), 10.0, None, 1e5)
    assert resolve_device('CPU').type == 'cpu'
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(UserError, match='unknown device'):
        resolve_device('gpu0')


def test_render_plan_shrinks_chunk_then_tiles():
    plan, seen = RenderPlan(chunk_size=20000), []
    while plan is not None:
        seen.append((plan.chunk_size, plan.tile))
        plan = plan.smaller((300, 200))
    assert seen == [(20000, None), (10000, None), (5000, None), (4096, None), (4096, 150), (4096, 75), (4096, 37),
                    (4096, 32)]


class _OutOfMemoryNet:
    """Raises CUDA OOM until the chunk is small and tiles are on; records the calls."""

    def __init__(self):
        self.calls = []

    def upsample(self, lq, size, chunk_size, tile, tile_overlap, out=None):
        self.calls.append((chunk_size, tile))
        if chunk_size > 4096 or tile is None or tile > 64:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory (simulated)')
        assert out is not None and out.device.type == 'cpu'  # tiles stream into a host buffer
        return out.fill_(2.0)


def test_render_retries_after_cuda_out_of_memory():
    net = _OutOfMemoryNet()
    out = render(net, torch.zeros(1, 3, 200, 100), (400, 200), RenderPlan(chunk_size=16384, tile=None))
    assert net.calls == [(16384, None), (8192, None), (4096, None), (4096, 100), (4096, 50)]
    assert out.max() == 1  # clamped
    with pytest.raises(UserError, match='out of GPU memory'):
        render(_OutOfMemoryNet(), torch.zeros(1, 3, 20, 20), (40, 40), RenderPlan(chunk_size=4096, tile=None))


def test_ellipse_axes():
    major, minor, angle = ellipse_axes(2.0, 1.0, 0.0)  # taller than wide: major axis along y
    assert (major, minor) == pytest.approx((2.0, 1.0)) and abs(angle) == pytest.approx(90)
    major, minor, angle = ellipse_axes(1.0, 1.0, 0.5)  # positive correlation: along x = y (down-right)
    assert major == pytest.approx(np.sqrt(1.5)) and minor == pytest.approx(np.sqrt(0.5))
    assert angle % 180 == pytest.approx(45)
