"""Plot the loss and validation PSNR of a BasicSR training log (as our model writes it) into a PNG.

    python scripts/plot_training_log.py docs/logs/train_wallpapers_h200_2026-12-01.log \
        docs/figures/training_wallpapers.png
"""
import argparse
import re
from collections import defaultdict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ITER_LINE = re.compile(r'iter:\s*([\d,]+).*?l_pix: ([\d.e+-]+)')
VAL_NAME = re.compile(r'Validation (\S+)')
VAL_VALUE = re.compile(r'# (\w+): ([\d.]+)')


def parse(path: str):
    """(iterations, losses) and {dataset: [(iteration, value)]} from a BasicSR log."""
    iters, losses, val = [], [], defaultdict(list)
    current, dataset = 0, None
    with open(path) as f:
        for line in f:
            m = ITER_LINE.search(line)
            if m:
                current = int(m.group(1).replace(',', ''))
                iters.append(current)
                losses.append(float(m.group(2)))
                continue
            m = VAL_NAME.search(line)
            if m:
                dataset = m.group(1)
                continue
            m = VAL_VALUE.search(line)
            if m and dataset:
                val[dataset].append((current, float(m.group(2))))
                dataset = None
    return iters, losses, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('log')
    parser.add_argument('out')
    args = parser.parse_args()
    iters, losses, val = parse(args.log)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(iters, losses, lw=1)
    ax_loss.set(xlabel='iteration', ylabel='L1 loss (train batch)', title='training loss', yscale='log')
    for name, points in val.items():
        ax_val.plot(*zip(*points), marker='o', label=name)
    ax_val.set(xlabel='iteration', ylabel='PSNR-Y (dB)', title='validation (held-out photos)')
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == '__main__':
    main()
