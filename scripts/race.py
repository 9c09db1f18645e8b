"""Equal-budget quality race with ablation variants of ours, on the shared harness.

Runs ``quality_race.py`` (the team's harness: same sampler, optimiser, iterations and Y-PSNR evaluation for every
model; keep a copy in the ignored ``.peers/``) with ``--peer ours`` replaced by a GaussianSR built with the
``--set key=value`` overrides (values parsed as YAML), so each ablation row trains exactly like the peers.

    python scripts/race.py --harness .peers/quality_race.py --set num_gaussian_channels=0 -- \
        --iters 6000 --train-dir datasets/demo_wallpapers/train --eval-dir datasets/demo_wallpapers/val \
        --out results/race_ng0.json
    python scripts/race.py --table results/race_*.json      # markdown table of finished runs
"""
import argparse
import importlib.util
import json
import os
import sys
from typing import Dict, List

import yaml


def parse_overrides(pairs: List[str]) -> Dict[str, object]:
    """``['radius=2', 'encoder={type: rdn}']`` -> ``{'radius': 2, 'encoder': {'type': 'rdn'}}``."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise SystemExit(f'error: --set takes key=value, got {pair!r}')
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def run_harness(harness: str, overrides: Dict[str, object], harness_args: List[str], device: str) -> None:
    if not os.path.isfile(harness):
        raise SystemExit(f'error: harness not found: {harness} (copy ../shared/tools/quality_race.py there)')
    spec = importlib.util.spec_from_file_location('quality_race', harness)
    race = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(race)
    race.dev = device  # the harness reads this module global for every tensor it makes
    if device == 'cpu':  # the harness synchronises CUDA once after training; nothing to wait for on a CPU
        race.torch.cuda.synchronize = lambda *args: None

    def build(peer):
        import gaussiansr_plugin  # noqa: F401
        from basicsr.utils.registry import ARCH_REGISTRY
        net = ARCH_REGISTRY.get('GaussianSR')(**overrides).to(race.dev)
        return net, (lambda lr, coord, cell, s: net(lr, coord, cell)), (lambda lr, H, W, s: net.upsample(lr, (H, W)))

    race.build = build
    sys.argv = ['quality_race.py', '--peer', 'ours', *harness_args]
    race.main()


def table(paths: List[str]) -> str:
    """Markdown: one row per result file, PSNR-Y gain over bicubic per scale and training seconds."""
    results = [(p, json.load(open(p))) for p in paths]
    scales = list(results[0][1]['holdout']) if results else []
    lines = ['| run | ' + ' | '.join(f'x{s}' for s in scales) + ' | train s | params |',
             '|---|' + '---|' * (len(scales) + 2)]
    for path, r in results:
        gains = [r['holdout'][s]['psnr'] - r['holdout'][s]['bicubic'] for s in scales]
        lines.append(f'| {path} | ' + ' | '.join(f'{g:+.2f}' for g in gains) +
                     f" | {r['train_s']:.0f} | {r['params'] / 1e6:.2f} M |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--harness', default='.peers/quality_race.py')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE')
    parser.add_argument('--device', default='cuda', help='the harness device (cpu only for a smoke run)')
    parser.add_argument('--table', nargs='+', metavar='JSON', help='print a table of finished runs and exit')
    args, rest = parser.parse_known_args()
    if args.table:
        print(table(args.table))
        return
    run_harness(args.harness, parse_overrides(args.overrides), [a for a in rest if a != '--'], args.device)


if __name__ == '__main__':
    main()
