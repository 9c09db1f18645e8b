"""Figures of an equal-budget race (scripts/race.py, scripts/race_all.sh): training-loss curves, PSNR-Y gain over
bicubic against iteration, and visual crops side by side.

    python scripts/plot_race.py --loss docs/figures/race_loss.png results/race_default.json \
        results/race_official.json results/race_liif.json
    python scripts/plot_race.py --curves docs/figures/race_curves.png results/race_*.json
    python scripts/plot_race.py --crops results/crops --out docs/figures/race_crops.png
"""
import argparse
import glob
import os
import re
import sys
from typing import List

import cv2
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from race import load_results  # noqa: E402  (the table's reading of result files)

CROP_COLUMNS = ('lr', 'bicubic', 'gaussiansr', 'liif', 'ours', 'hr')
CROP_TITLES = {'lr': 'LR (nearest)', 'bicubic': 'bicubic', 'gaussiansr': 'official GaussianSR', 'liif': 'LIIF',
               'ours': 'ours', 'hr': 'HR'}


def smooth(values: List[float], window: int = 5) -> np.ndarray:
    """Moving average of a loss history."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode='valid')


def label(result: dict) -> str:
    """The racer's name, with the peer's title when they differ (``official`` -> ``official (official GaussianSR)``)."""
    title = CROP_TITLES.get(result['peer'], result['peer'])
    return result['racer'] if result['racer'] in (result['peer'], title) else f"{result['racer']} ({title})"


def plot_loss(paths: List[str], out: str) -> None:
    """Mean training L1 per ``loss_every`` iterations (smoothed over 5 points), one line per result file."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for result in load_results(paths):
        losses = smooth(result['loss'])
        offset = (len(result['loss']) - len(losses)) // 2
        every = result['loss_every']
        ax.plot((np.arange(len(losses)) + offset + 1) * every, losses, lw=1.2, label=label(result))
    ax.set(xlabel='iteration', ylabel='L1 loss (train, moving mean of 5 logs)', yscale='log',
           title='equal-budget race: training loss')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_curves(paths: List[str], out: str) -> None:
    """PSNR-Y gain over bicubic (dB) against iteration: one panel per scale, one line per result file."""
    results = load_results(paths)
    if not results:
        raise SystemExit('error: --curves needs result files')
    scales = list(results[0]['bicubic'])
    columns = min(3, len(scales))
    rows = -(-len(scales) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scales):
        for result in results:
            its = sorted(result['scores'], key=int)
            gains = [result['scores'][i][s]['psnr'] - result['bicubic'][s]['psnr'] for i in its]
            ax.plot([int(i) for i in its], gains, marker='o', ms=3, lw=1.2, label=label(result))
        ax.set(title=f'x{s}', xlabel='iteration', ylabel='PSNR-Y gain over bicubic (dB)')
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(scales):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=8)
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
    parser.add_argument('--curves', metavar='PNG', help='write the PSNR-Y gain per scale against iteration here')
    parser.add_argument('--crops', metavar='DIR', help='folder of crops saved by scripts/race.py --crops')
    parser.add_argument('--out', metavar='PNG', help='crop figure path')
    parser.add_argument('results', nargs='*')
    args = parser.parse_args()
    if args.loss:
        plot_loss(args.results, args.loss)
    if args.curves:
        plot_curves(args.results, args.curves)
    if args.crops:
        plot_crops(args.crops, args.out or 'race_crops.png')


if __name__ == '__main__':
    main()
