"""Plot how latency and peak memory grow with output pixels, from a scripts/bench.py JSON.

    python scripts/plot_bench.py docs/logs/model_h200_2026-11-29/bench.json docs/figures/bench_scaling.png
"""
import argparse
from collections import defaultdict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from bench import variant  # noqa: E402  (scripts/bench.py: one label per precision/graph variant)
from json_results import read_result  # noqa: E402


def series(result: dict) -> dict:
    """{variant label: [(output pixels, ms, GiB)]} over the x4 cases (the others differ in scale, not size)."""
    out = defaultdict(list)
    for row in result['inference']:
        if 'ms' not in row or row['scale'] != 4:
            continue
        out[variant(row)].append((row['hr'] ** 2, row['ms'], row.get('peak_gib', float('nan'))))
    return {k: sorted(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('bench_json')
    parser.add_argument('out')
    args = parser.parse_args()
    result = read_result(args.bench_json, ('inference',), 'scripts/bench.py --json')
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in series(result).items():
        pixels, ms, gib = zip(*points)
        ax_t.plot(pixels, ms, marker='o', label=label)
        ax_m.plot(pixels, gib, marker='o', label=label)
    ax_t.set(xscale='log', yscale='log', xlabel='output pixels (x4 cases)', ylabel='ms (median)',
             title=f"latency, {result['device_name']}")
    ax_m.set(xscale='log', yscale='log', xlabel='output pixels (x4 cases)', ylabel='peak GiB (max_memory_allocated)',
             title='peak memory')
    for ax in (ax_t, ax_m):
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == '__main__':
    main()
