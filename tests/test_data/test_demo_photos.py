"""prepare_demo_photos: the scikit-image part of the demo dataset (offline)."""
import csv
import os
from os import path as osp

import cv2

from gaussiansr_plugin.data.demo_photos import DEMO_PHOTOS, prepare_demo_photos


def test_prepare_demo_photos(tmp_path):
    out = str(tmp_path / 'demo')
    result = prepare_demo_photos(out, progress=False)
    assert [osp.basename(p)
            for p in result['train']] == ['astronaut.png', 'motorcycle_left.png', 'motorcycle_right.png', 'rocket.png']
    assert [osp.basename(p) for p in result['val']] == ['chelsea.png', 'coffee.png']
    img = cv2.imread(osp.join(out, 'val', 'chelsea.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (300, 451, 3)
    with open(osp.join(out, 'manifest.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert sorted(r['file'] for r in rows) == sorted(f'{v[0]}/{k}.png' for k, v in DEMO_PHOTOS.items())
    assert {r['licence'] for r in rows if r['split'] == 'val'} == {'CC0'}
    assert all(r['package'] == 'scikit-image' and r['version'] for r in rows)
    # idempotent: existing files are kept untouched
    stamp = os.stat(result['train'][0]).st_mtime_ns
    assert prepare_demo_photos(out, progress=False) == result
    assert os.stat(result['train'][0]).st_mtime_ns == stamp
    assert not [n for n in os.listdir(osp.join(out, 'train')) if 'tmp' in n]
