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


def _demo_script():
    import importlib.util
    script = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'scripts', 'prepare_demo_data.py')
    spec = importlib.util.spec_from_file_location('prepare_demo_data', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wallpaper_split_is_fixed(tmp_path):
    script = _demo_script()
    outputs = script.wallpaper_outputs(str(tmp_path))
    assert len(outputs) == 32
    val = sorted(osp.splitext(osp.basename(p))[0] for p in outputs if osp.basename(osp.dirname(p)) == 'val')
    assert val == sorted(script.VAL_WALLPAPERS) and len(val) == 6
    script.write_wallpaper_lists(str(tmp_path))
    assert len((tmp_path / 'meta_info_wallpapers_train.txt').read_text().split()) == 26
    assert (tmp_path / 'meta_info_wallpapers_val.txt').read_text().split() == [f'{v}.png' for v in val]
