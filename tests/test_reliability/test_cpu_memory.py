"""On the CPU the memory of an upscale is estimated before anything is decoded or rendered: it tiles automatically
when the estimate exceeds the available memory, and refuses in one line when even small tiles cannot fit."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference import image_io, memory_plan
from gaussiansr_plugin.inference.memory_plan import estimate_bytes
from gaussiansr_plugin.inference.upscaler import RenderPlan
from shared_helpers import cli, messages


def test_large_estimate_tiles_automatically_with_the_same_result(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    path, net = tiny_checkpoint
    src = str(tmp_path / 'in.png')  # odd sizes: no HR centre on an LR border, where tiles could round differently
    cv2.imwrite(src, np.random.default_rng(0).integers(0, 255, (161, 127, 3), dtype=np.uint8))
    smallest_untiled = estimate_bytes(net, (161, 127), (322, 254), memory_plan.MIN_CHUNK_SIZE)
    assert cli('upscale', src, tmp_path / 'full.png', '--scale', 2, '--model', path, '--device', 'cpu') == 0
    capsys.readouterr()  # the first run's progress bar
    monkeypatch.setattr(memory_plan, 'available_memory', lambda: int(smallest_untiled * 0.9))  # fits only in tiles
    assert cli('upscale', src, tmp_path / 'tiled.png', '--scale', 2, '--model', path, '--device', 'cpu') == 0
    err = messages(capsys.readouterr().err)
    assert err.startswith(f'warning: {tmp_path}/tiled.png: the estimated ') and '-pixel tiles' in err, err
    assert err.count('\n') == 1
    full, tiled = (cv2.imread(str(tmp_path / n)).astype(int) for n in ('full.png', 'tiled.png'))
    assert np.abs(full - tiled).max() <= 1


def test_an_image_too_large_for_the_memory_is_refused_before_decoding(tmp_path, tiny_checkpoint, capsys,
                                                                      monkeypatch):
    src, out = tmp_path / 'flat.jpg', tmp_path / 'out.png'
    Image.new('L', (6000, 5000), 128).save(src, quality=50)  # a few kB, 3e7 pixels: within --max-pixels
    monkeypatch.setattr(memory_plan, 'available_memory', lambda: 2**30)
    monkeypatch.setattr(image_io, 'decode', lambda *args: (_ for _ in ()).throw(AssertionError('decoded')))
    assert cli('upscale', src, out, '--scale', 2, '--model', tiny_checkpoint[0], '--device', 'cpu') == 2
    err = capsys.readouterr().err
    assert err.startswith('error: upscaling 6000x5000 to 12000x10000 needs about ') and err.count('\n') == 1, err
    assert 'GiB of memory even in 32-pixel tiles, 0.8 GiB usable here' in err and not out.exists()


def test_the_plan_is_unchanged_when_it_fits_and_only_the_chunk_shrinks_when_that_suffices(tiny_checkpoint):
    net, plan = tiny_checkpoint[1], RenderPlan(chunk_size=4096)
    assert memory_plan.fit_to_memory(net, (40, 40), (80, 80), plan, available=2**34) == (plan, '')
    fitted, note = memory_plan.fit_to_memory(net, (400, 400), (800, 800), RenderPlan(chunk_size=2**20),
                                             available=estimate_bytes(net, (400, 400), (800, 800), 2**20) // 2)
    assert fitted.chunk_size < 2**20 and fitted.tile is None and note.endswith(f'chunk size {fitted.chunk_size}')
    assert estimate_bytes(net, (400, 400), (800, 800), fitted.chunk_size, fitted.tile, fitted.tile_overlap) < \
        estimate_bytes(net, (400, 400), (800, 800), 2**20) // 2


def test_available_memory_is_capped_by_a_cgroup_limit(monkeypatch):
    real_open = open
    files = {'/proc/meminfo': 'MemTotal: 9000 kB\nMemAvailable:   8000 kB\n', '/sys/fs/cgroup/memory.max': '6000000\n',
             '/sys/fs/cgroup/memory.current': '1000000\n'}

    def fake_open(path, *args, **kwargs):
        if path in files:
            return io.StringIO(files[path])
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr('builtins.open', fake_open)
    assert memory_plan.available_memory() == 5000000
    files['/sys/fs/cgroup/memory.max'] = 'max\n'
    assert memory_plan.available_memory() == 8000 * 1024


def test_a_gpu_run_checks_the_host_memory_it_holds_whatever_the_plan(tiny_checkpoint):
    net, plan = tiny_checkpoint[1], RenderPlan(chunk_size=2**20)
    assert memory_plan.fit_to_memory(net, (400, 400), (800, 800), plan, 'cuda', available=2**30) == (plan, '')
    with pytest.raises(UserError, match=r'needs about 6\.9 GiB of memory for the input and output, 0\.8 GiB usable'):
        memory_plan.fit_to_memory(net, (4000, 4000), (8000, 8000), plan, 'cuda', available=2**30)
