"""Figures of an equal-budget race (scripts/ablations.sh): training-loss curves and visual crops side by side.

    python scripts/plot_race.py --loss docs/figures/race_loss.png results/race_default.json \
        results/race_official.json results/race_liif.json
    python scripts/plot_race.py --crops results/crops --out docs/figures/race_crops.png
"""
import argparse
import glob
import json
import os
import re
from typing import List

import cv2
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

CROP_COLUMNS = ('lr', 'bicubic', 'gaussiansr', 'liif', 'ours', 'hr')
CROP_TITLES = {'lr': 'LR (nearest)', 'bicubic': 'bicubic', 'gaussiansr': 'official GaussianSR', 'liif': 'LIIF',
               'ours': 'ours', 'hr': 'HR'}


def smooth(values: List[float], window: int = 5) -> np.ndarray:
    """Moving average (the harness logs one batch's loss every 100 iterations: noisy)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode='valid')


def plot_loss(paths: List[str], out: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        losses = smooth(result['loss_every_100'])
        offset = (len(result['loss_every_100']) - len(losses)) // 2
        variant = ', '.join(f'{k}={v}' for k, v in result.get('variant', {}).items())
        label = CROP_TITLES.get(result['peer'], result['peer']) + (f' ({variant})' if variant else '')
        ax.plot((np.arange(len(losses)) + offset) * 100, losses, lw=1.2, label=label)
    ax.set(xlabel='iteration', ylabel='L1 loss (train batch, mean of 5 logs)', yscale='log',
           title='equal-budget race: training loss')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def crop_psnr(img: np.ndarray, hr: np.ndarray) -> float:
    """RGB PSNR (dB) of a crop against its HR crop, 8-bit images, no border cropped."""
    mse = np.mean((img.astype(np.float64) - hr.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(255**2 / mse)


def plot_crops(folder: str, out: str) -> None:
    """One row per photo and scale (``<photo>_x<s>_<kind>.png``), columns CROP_COLUMNS where present; prints each
    upscaled crop's RGB PSNR against the HR crop."""
    kind = re.compile(r'_(' + '|'.join(CROP_COLUMNS) + r')\.png$')
    keys = sorted({kind.sub('', os.path.basename(p)) for p in glob.glob(os.path.join(folder, '*.png'))})
    columns = [c for c in CROP_COLUMNS if glob.glob(os.path.join(folder, f'*_{c}.png'))]
    if not keys:
        raise SystemExit(f'error: no crops in {folder}')
    fig, axes = plt.subplots(len(keys), len(columns), figsize=(2.3 * len(columns), 2.4 * len(keys)), squeeze=False)
    for index, (row, key) in enumerate(zip(axes, keys)):
        hr = cv2.imread(os.path.join(folder, f'{key}_hr.png'))
        for ax, kind in zip(row, columns):
            img = cv2.imread(os.path.join(folder, f'{key}_{kind}.png'))
            if img is not None:
                if kind not in ('lr', 'hr'):
                    print(f'{key} {kind}: RGB PSNR {crop_psnr(img, hr):.2f} dB')
                if kind == 'lr':
                    img = cv2.resize(img, hr.shape[1::-1], interpolation=cv2.INTER_NEAREST)
                ax.imshow(img[..., ::-1])
            ax.set_xticks([])
            ax.set_yticks([])
            if index == 0:
                ax.set_title(CROP_TITLES[kind], fontsize=9)
        row[0].set_ylabel(key.replace('_x', '\nx'), fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--loss', metavar='PNG', help='write the loss curves of the given result JSONs here')
    parser.add_argument('--crops', metavar='DIR', help='folder of crops saved by scripts/race.py --crops')
    parser.add_argument('--out', metavar='PNG', help='crop figure path')
    parser.add_argument('results', nargs='*')
    args = parser.parse_args()
    if args.loss:
        plot_loss(args.results, args.loss)
    if args.crops:
        plot_crops(args.crops, args.out or 'race_crops.png')


if __name__ == '__main__':
    main()
