"""The offline demo dataset: real photos bundled inside scikit-image's wheel (no download needed).

Only the photos below are read; other ``skimage.data`` images are fetched from the internet on first use.
Split (fixed): train = astronaut, rocket, motorcycle_left, motorcycle_right (the two motorcycle views are
near-duplicates, so they stay on the same side); val = chelsea, coffee.
"""
import csv
import os
from os import path as osp
from typing import Dict, Iterable, List

import cv2
import numpy as np
from tqdm import tqdm

MANIFEST = 'manifest.csv'
MANIFEST_FIELDS = ('file', 'split', 'package', 'version', 'source', 'licence', 'copyright', 'orig_size', 'size')
_MIDDLEBURY = ('not stated by scikit-image (Middlebury 2014 stereo benchmark)',
               'N. Nesic, P. Westling, X. Wang, Y. Kitajima, G. Krathwohl, D. Scharstein (Middlebury College)')
# name: (split, licence, copyright / credit), as given in the skimage.data docstrings
DEMO_PHOTOS = {
    'astronaut': ('train', 'public domain', 'NASA (Eileen Collins)'),
    'rocket': ('train', 'public domain', 'SpaceX (DSCOVR launch on Falcon 9)'),
    'motorcycle_left': ('train', ) + _MIDDLEBURY,
    'motorcycle_right': ('train', ) + _MIDDLEBURY,
    'chelsea': ('val', 'CC0', 'Stefan van der Walt'),
    'coffee': ('val', 'CC0', 'Rachel Michetti'),
}


def load_photo(name: str) -> np.ndarray:
    """One bundled scikit-image photo, [H, W, 3] uint8 RGB."""
    import skimage.data
    if name not in DEMO_PHOTOS:
        raise ValueError(f'unknown demo photo {name!r}; choose from {sorted(DEMO_PHOTOS)}')
    if name.startswith('motorcycle_'):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == 'motorcycle_left' else right
    return getattr(skimage.data, name)()


def write_png_atomic(img_rgb: np.ndarray, path: str) -> None:
    """Write an RGB uint8 image as PNG via a temporary file, so a partial file never appears at ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}.png'
    if not cv2.imwrite(tmp, np.ascontiguousarray(img_rgb[..., ::-1])):
        raise OSError(f'cannot write {path}')
    os.replace(tmp, path)


def update_manifest(out_dir: str, rows: Iterable[dict]) -> str:
    """Merge ``rows`` (keyed by ``file``) into ``<out_dir>/manifest.csv`` and return its path."""
    path = osp.join(out_dir, MANIFEST)
    table: Dict[str, dict] = {}
    if osp.isfile(path):
        with open(path, newline='') as f:
            table = {row['file']: row for row in csv.DictReader(f)}
    table.update({row['file']: row for row in rows})
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(sorted(table.values(), key=lambda r: (r['split'], r['file'])))
    os.replace(tmp, path)
    return path


def prepare_demo_photos(out_dir: str, progress: bool = True) -> Dict[str, List[str]]:
    """Write the scikit-image demo photos to ``<out_dir>/{train,val}/<name>.png`` (existing files are kept).

    Also records them in ``<out_dir>/manifest.csv`` (package, version, source, licence).

    Args:
        out_dir (str): Output folder, e.g. ``datasets/demo``.
        progress (bool): Show a tqdm progress bar. Default: True.

    Returns:
        dict: ``{'train': [paths], 'val': [paths]}``, sorted.
    """
    import skimage
    result: Dict[str, List[str]] = {'train': [], 'val': []}
    rows = []
    for name in tqdm(sorted(DEMO_PHOTOS), desc='demo photos', unit='img', disable=not progress):
        split, licence, credit = DEMO_PHOTOS[name]
        path = osp.join(out_dir, split, f'{name}.png')
        if not osp.isfile(path):
            write_png_atomic(load_photo(name), path)
        height, width = cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[:2]
        result[split].append(path)
        source = 'skimage.data.stereo_motorcycle()' if name.startswith('motorcycle_') else f'skimage.data.{name}()'
        rows.append(
            dict(
                file=f'{split}/{name}.png',
                split=split,
                package='scikit-image',
                version=skimage.__version__,
                source=source,
                licence=licence,
                copyright=credit,
                orig_size=f'{width}x{height}',
                size=f'{width}x{height}'))
    update_manifest(out_dir, rows)
    return {split: sorted(paths) for split, paths in result.items()}
