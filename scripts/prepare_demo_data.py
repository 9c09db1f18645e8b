#!/usr/bin/env python
"""Build the offline demo dataset: scikit-image's bundled photos, and optionally Debian wallpaper photos.

Layout: ``<out>/train/*.png``, ``<out>/val/*.png``, ``<out>/manifest.csv`` (file, split, package, version,
source path, licence, copyright); with ``--wallpapers`` also ``<out>/meta_info_wallpapers_{train,val}.txt``
(wallpaper names only, for a dataset's ``meta_info_file``). Existing PNGs are kept, so the script can be re-run.

Examples:
    python scripts/prepare_demo_data.py                                  # datasets/demo, 4 train + 2 val
    python scripts/prepare_demo_data.py --out datasets/demo_wallpapers --wallpapers   # + 26 train + 6 val
    python scripts/prepare_demo_data.py --wallpapers --lmdb              # also <out>/train.lmdb, <out>/val.lmdb

``--wallpapers`` needs root and Debian's archive: it runs ``apt-get download`` for three packages (run
``apt-get update`` once first) and ``dpkg-deb -x``; photos are downscaled to a long side <= 1280 px (Lanczos)
and saved as RGB PNG. Only the real photographs listed below are used.
"""
import argparse
import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from os import path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, ImageOps
from tqdm import tqdm

import gaussiansr_plugin  # noqa: F401  (torchvision alias for BasicSR)
from gaussiansr_plugin.data.demo_photos import prepare_demo_photos, update_manifest  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from prepare_div2k_lmdb import DataError, folder_to_lmdb  # noqa: E402

MAX_SIDE = 1280
_PLASMA = ('BytheWater', 'ColdRipple', 'ColorfulCups', 'DarkestHour', 'EveningGlow', 'FallenLeaf', 'Grey', 'Kite',
           'OneStandsOut', 'Path', 'summer_1am')
_MATE = ('Aqua', 'Blinds', 'Dune', 'Garden', 'GreenMeadow', 'LadyBird', 'RainDrops', 'Storm', 'TwoWings', 'Wood',
         'YellowFlower')
_LXQT = ('Valendas.png', 'after-the-rain.jpg', 'appleflower.png', 'beam.png', 'butterfly.png', 'cloud.png', 'drop.png',
         'flowers.png', 'fog.jpg', 'this-is-not-windows.jpg')
_PLASMA_FILES = {x: f'usr/share/wallpapers/{x}/contents/images/2560x1600.jpg' for x in _PLASMA}
_MATE_FILES = {x: f'usr/share/backgrounds/mate/nature/{x}.jpg' for x in _MATE}
_LXQT_FILES = {osp.splitext(x)[0]: f'usr/share/lxqt/wallpapers/{x}' for x in _LXQT}
# package -> (pinned Debian 12 version, licence, output prefix, {output stem: path inside the package})
WALLPAPERS: Dict[str, Tuple[str, str, str, Dict[str, str]]] = {
    'plasma-workspace-wallpapers': ('4:5.27.5-2', 'GPL-2+', 'plasma', _PLASMA_FILES),
    'mate-backgrounds': ('1.26.0-1', 'GPL-2+', 'mate', _MATE_FILES),
    'lxqt-themes': ('1.2.0-1', 'CC-BY-SA-3.0', 'lxqt', _LXQT_FILES),
}
# The held-out validation photos (fixed; also listed in docs/data.md). All others are for training.
VAL_WALLPAPERS = ('plasma_EveningGlow', 'plasma_Path', 'mate_Dune', 'mate_LadyBird', 'lxqt_Valendas', 'lxqt_butterfly')
# lxqt-themes' debian/copyright files the wallpapers under '*' (the LXQt code); its wallpapers/License file says:
_LXQT_CREDIT = 'LXQt Project Team 2022, CC-BY-SA-3.0 (usr/share/lxqt/wallpapers/License; photos credited to stefonarch)'


def wallpaper_outputs(out_dir: str) -> Dict[str, Tuple[str, str, str]]:
    """``{output path: (package, stem, path inside the package)}`` for every wallpaper photo."""
    outputs = {}
    for package, (_, _, prefix, files) in WALLPAPERS.items():
        for stem, inner in files.items():
            name = f'{prefix}_{stem}'
            split = 'val' if name in VAL_WALLPAPERS else 'train'
            outputs[osp.join(out_dir, split, f'{name}.png')] = (package, stem, inner)
    return outputs


def fetch_package(package: str, version: str, workdir: str) -> Tuple[str, str]:
    """``apt-get download`` (pinned version, else the candidate) and ``dpkg-deb -x``; returns (root, version)."""
    if shutil.which('apt-get') is None or shutil.which('dpkg-deb') is None:
        raise DataError('--wallpapers needs apt-get and dpkg-deb (a Debian/Ubuntu system)')
    debs = glob.glob(osp.join(workdir, f'{package}_*.deb'))
    if not debs:
        for spec in (f'{package}={version}', package):
            proc = subprocess.run(['apt-get', 'download', spec], cwd=workdir, capture_output=True, text=True)
            debs = glob.glob(osp.join(workdir, f'{package}_*.deb'))
            if proc.returncode == 0 and debs:
                break
        else:
            last = (proc.stderr.strip().splitlines() or ['?'])[-1]
            raise DataError(f'apt-get download {package} failed ({last}); run `apt-get update` first (as root)')
    deb = sorted(debs)[-1]
    query = subprocess.run(['dpkg-deb', '-f', deb, 'Version'], capture_output=True, text=True, check=True)
    found = query.stdout.strip()
    root = osp.join(workdir, f'root_{package}')
    if not osp.isdir(root):
        subprocess.run(['dpkg-deb', '-x', deb, root], check=True)
    return root, found


def dep5_copyright(root: str, package: str, inner: str) -> str:
    """The Copyright field of the last debian/copyright stanza whose Files pattern matches ``inner``."""
    if package == 'lxqt-themes':
        return _LXQT_CREDIT
    path = osp.join(root, 'usr/share/doc', package, 'copyright')
    if not osp.isfile(path):
        return ''
    found = ''
    for stanza in open(path, encoding='utf-8', errors='replace').read().split('\n\n'):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1] in (' ', '\t') and key:
                fields[key] += ' ' + line.strip()
            elif ':' in line:
                key, value = line.split(':', 1)
                fields[key] = value.strip()
        patterns = fields.get('Files', '').split()
        if any(p == '*' or fnmatch.fnmatch(inner, '*/' + p) for p in patterns):
            found = fields.get('Copyright', found)
    return found


def convert_photo(src: str, dst: str) -> Tuple[str, str]:
    """Open, apply EXIF orientation, make RGB, downscale to a long side <= MAX_SIDE (Lanczos), save PNG."""
    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img).convert('RGB')
        orig = f'{img.width}x{img.height}'
        factor = MAX_SIDE / max(img.size)
        if factor < 1:
            img = img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS)
        os.makedirs(osp.dirname(dst), exist_ok=True)
        tmp = f'{dst}.tmp{os.getpid()}.png'
        img.save(tmp, format='PNG', optimize=True)
        os.replace(tmp, dst)
        return orig, f'{img.width}x{img.height}'


def write_wallpaper_lists(out_dir: str) -> None:
    """``<out>/meta_info_wallpapers_{train,val}.txt``: the wallpaper names of each split, one per line.

    A dataset's ``meta_info_file`` option can point at them to use the wallpapers without the scikit-image photos.
    """
    names = {'train': [], 'val': []}
    for dst in sorted(wallpaper_outputs(out_dir)):
        names[osp.basename(osp.dirname(dst))].append(osp.basename(dst))
    for split, files in names.items():
        with open(osp.join(out_dir, f'meta_info_wallpapers_{split}.txt'), 'w') as f:
            f.write(''.join(f'{name}\n' for name in files))


def prepare_wallpapers(out_dir: str, download_dir: Optional[str] = None) -> List[str]:
    """Write the Debian wallpaper photos to ``<out>/{train,val}`` and the manifest; returns the written paths."""
    outputs = wallpaper_outputs(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    write_wallpaper_lists(out_dir)
    todo = {dst: spec for dst, spec in outputs.items() if not osp.isfile(dst)}
    if not todo:
        return []
    workdir = download_dir or tempfile.mkdtemp(prefix='gaussiansr_debs_')
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)  # lets apt's sandbox user write there
    try:
        roots = {p: fetch_package(p, WALLPAPERS[p][0], workdir) for p in sorted({s[0] for s in todo.values()})}
        rows = []
        for dst, (package, _, inner) in tqdm(sorted(todo.items()), desc='wallpapers', unit='img'):
            root, version = roots[package]
            src = osp.join(root, inner)
            if not osp.isfile(src):
                raise DataError(f'{package} {version} has no {inner}')
            orig, size = convert_photo(src, dst)
            rel = osp.relpath(dst, out_dir)
            rows.append(
                dict(
                    file=rel,
                    split=rel.split(os.sep)[0],
                    package=package,
                    version=version,
                    source='/' + inner,
                    licence=WALLPAPERS[package][1],
                    copyright=dep5_copyright(root, package, inner),
                    orig_size=orig,
                    size=size))
        update_manifest(out_dir, rows)
    finally:
        if download_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return sorted(todo)


def write_lmdbs(out_dir: str) -> None:
    """``<out>/train.lmdb`` and ``<out>/val.lmdb`` from the PNG folders (skipped when they exist)."""
    for split in ('train', 'val'):
        target = osp.join(out_dir, f'{split}.lmdb')
        if osp.exists(target):
            print(f'keep existing {target}')
        else:
            folder_to_lmdb(osp.join(out_dir, split), target)


def folder_megabytes(folder: str) -> float:
    return sum(osp.getsize(p) for p in glob.glob(osp.join(folder, '*', '*.png'))) / 2**20


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--out', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--wallpapers', action='store_true', help='add the Debian wallpaper photos (root, apt)')
    parser.add_argument('--no-skimage', action='store_true', help='leave out the scikit-image photos')
    parser.add_argument('--download-dir', default=None, help='keep/reuse the .deb files here (default: a temp dir)')
    parser.add_argument('--lmdb', action='store_true', help='also write <out>/train.lmdb and <out>/val.lmdb')
    args = parser.parse_args(argv)
    try:
        if not args.no_skimage:
            prepare_demo_photos(args.out)
        if args.wallpapers:
            prepare_wallpapers(args.out, args.download_dir)
        if args.lmdb:
            write_lmdbs(args.out)
    except DataError as err:
        print(f'prepare_demo_data: error: {err}', file=sys.stderr)
        return 2
    counts = {s: len(glob.glob(osp.join(args.out, s, '*.png'))) for s in ('train', 'val')}
    print(f'{args.out}: {counts["train"]} train, {counts["val"]} val images, {folder_megabytes(args.out):.1f} MB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
