"""scripts/pack_photos.py: lossless WebP copies that the race reads as the very same pixels."""
import os
import subprocess
import sys

import cv2
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import race  # noqa: E402


def _photos(folder, count=3):
    rng = np.random.default_rng(0)
    os.makedirs(folder)
    for i in range(count):
        noise = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(folder, f'p{i}.png'), noise)


def test_packed_photos_load_as_the_same_pixels(tmp_path):
    _photos(str(tmp_path / 'src' / 'train'))
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'pack_photos.py'), str(tmp_path / 'src'),
                          str(tmp_path / 'dst')], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path / 'dst' / 'train')) == ['p0.webp', 'p1.webp', 'p2.webp']
    png = race.load_photos(str(tmp_path / 'src' / 'train'), torch.device('cpu'), 1)
    webp = race.load_photos(str(tmp_path / 'dst' / 'train'), torch.device('cpu'), 1)
    assert len(png) == len(webp) == 3 and all(torch.equal(a, b) for a, b in zip(png, webp))


def test_a_folder_without_png_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'pack_photos.py'), str(tmp_path),
                          str(tmp_path / 'dst')], capture_output=True, text=True)
    assert run.returncode != 0 and run.stderr.strip() == f'error: no PNG under {tmp_path}'
