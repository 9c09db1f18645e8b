"""Equal-budget quality race (ours, its ablation variants, the official GaussianSR, LIIF) on the shared harness.

Runs ``quality_race.py`` (the team's harness: same sampler, optimiser, iterations and Y-PSNR evaluation for every
model; keep a copy in the ignored ``.peers/``). ``--peer ours`` trains a GaussianSR built with the ``--set
key=value`` overrides (values parsed as YAML), so each ablation row trains exactly like the peers. After the
harness has trained and scored a model, this script adds to its JSON: SSIM-Y on the same held-out crops
(BasicSR's ``calculate_ssim``), the scores of ``--eval-set`` variants of the trained net (e.g. soft kernel selection
at evaluation), visual crops (``--crops``) and the trained weights (``--save-weights``).

    python scripts/race.py --set num_gaussian_channels=0 -- --iters 6000 \
        --train-dir datasets/demo_wallpapers/train --eval-dir datasets/demo_wallpapers/val --out results/race_ng0.json
    python scripts/race.py --peer liif --crops results/crops -- --iters 6000 ... --out results/peer_liif.json
    python scripts/race.py --timing 50 --set radius=4        # ms per training iteration of the variant, alone
    python scripts/race.py --table results/*.json             # markdown tables of finished runs
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import yaml

CROP_SCALES = (4, 8)
CROP_LR_SIDE = 48


def parse_overrides(pairs: List[str]) -> Dict[str, object]:
    """``['radius=2', 'encoder={type: rdn}']`` -> ``{'radius': 2, 'encoder': {'type': 'rdn'}}``."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise SystemExit(f'error: --set takes key=value, got {pair!r}')
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def load_harness(harness: str, device: str):
    """The harness as a module, its tensors on ``device``."""
    if not os.path.isfile(harness):
        raise SystemExit(f'error: harness not found: {harness} (copy ../shared/tools/quality_race.py there)')
    spec = importlib.util.spec_from_file_location('quality_race', harness)
    race = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(race)
    race.dev = device  # the harness reads this module global for every tensor it makes
    if device == 'cpu':  # the harness synchronises CUDA once after training; nothing to wait for on a CPU
        race.torch.cuda.synchronize = lambda *args: None
    return race


def build_ours(race, overrides: Dict[str, object]):
    """(net, fwd, up) of a GaussianSR variant in the harness's calling convention ([0, 1] in and out)."""
    import gaussiansr_plugin  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('GaussianSR')(**overrides).to(race.dev)
    return net, (lambda lr, coord, cell, s: net(lr, coord, cell)), (lambda lr, H, W, s: net.upsample(lr, (H, W)))


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] RGB in [0, 1] -> HxWx3 uint8, rounded as the harness does."""
    return (t[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def centre_crop(im: torch.Tensor, side: int, lr_side: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The centre ``side``² crop of a uint8 photo [3, H, W] as [1, 3, side, side] in [0, 1], and its LR as the
    harness makes it (antialiased bicubic to ``lr_side``², quantised to 8 bits)."""
    y0, x0 = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
    hr = im[:, y0:y0 + side, x0:x0 + side].float()[None] / 255
    lr = F.interpolate(hr, size=(lr_side, lr_side), mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)
    return hr, (lr * 255).round() / 255


def bicubic_up(lr: torch.Tensor, h: int, w: int, s: Optional[float] = None) -> torch.Tensor:
    """Plain bicubic upsampling, in the harness's ``up(lr, H, W, s)`` convention: the baseline of every score."""
    return F.interpolate(lr, size=(h, w), mode='bicubic', align_corners=False)


def evaluate(race, up: Callable, photos: List[torch.Tensor]) -> Dict[str, dict]:
    """PSNR-Y and SSIM-Y per harness scale on its held-out crops (240x240 centre, border ceil(s))."""
    import gaussiansr_plugin  # noqa: F401  (makes BasicSR importable with current torchvision)
    from basicsr.metrics import calculate_ssim
    scores = {}
    with torch.no_grad():
        for s in race.SCALES:
            lr_side = int(240 // s)
            side = round(lr_side * s)
            rows = []
            for im in photos:
                hr, lr = centre_crop(im, side, lr_side)
                sr, gt = to_uint8(up(lr, side, side, s)), to_uint8(hr)
                border = math.ceil(s)
                rows.append((race.y_psnr(sr, gt, border),
                             calculate_ssim(sr[..., ::-1], gt[..., ::-1], border, test_y_channel=True)))
            psnr, ssim = np.mean(rows, axis=0)
            scores[str(s)] = {'psnr': float(psnr), 'ssim': float(ssim)}
    return scores


def bicubic_ssim(race, photos: List[torch.Tensor]) -> Dict[str, float]:
    return {s: v['ssim'] for s, v in evaluate(race, bicubic_up, photos).items()}


def save_crops(race, up: Callable, paths: List[str], folder: str, tag: str) -> None:
    """For each photo and scale in CROP_SCALES: a centre crop of CROP_LR_SIDE * s HR pixels, its LR, bicubic and
    ``tag``'s output, as ``<photo>_x<s>_<kind>.png`` in ``folder`` (shared by the models of one race)."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    for path in paths:
        im = race.load_dir(path)[0]
        name = os.path.splitext(os.path.basename(path))[0]
        for s in CROP_SCALES:
            side = CROP_LR_SIDE * s
            if side > min(im.shape[1:]):
                print(f'note: {name} is smaller than a x{s} crop ({side} pixels); skipped', file=sys.stderr)
                continue
            hr, lr = centre_crop(im, side, CROP_LR_SIDE)
            with torch.no_grad():
                images = {tag: up(lr, side, side, s), 'hr': hr, 'lr': lr, 'bicubic': bicubic_up(lr, side, side)}
            for kind, img in images.items():
                cv2.imwrite(os.path.join(folder, f'{name}_x{s}_{kind}.png'), to_uint8(img)[..., ::-1])


def time_iterations(race, overrides: Dict[str, object], steps: int, warmup: int = 10) -> float:
    """Median ms of one harness training iteration (forward, L1, backward, Adam) of the variant; the batches are
    made beforehand, so only the model's step is timed."""
    from gaussiansr_plugin.inference.profiling import time_call
    net, fwd, _ = build_ours(race, overrides)
    photos = [torch.rand(3, 256, 256, device=race.dev) * 255]
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    g = torch.Generator().manual_seed(0)
    batches = iter([race.batch(photos, g) for _ in range(steps + warmup)])

    def step():
        lr, coord, cell, gt, s = next(batches)
        loss = (fwd(lr, coord, cell, s) - gt).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time_call(step, torch.device(race.dev), steps, warmup=warmup)


def with_progress(make_batch: Callable, every: int) -> Callable:
    """The harness's batch maker, printing the iteration and elapsed seconds every ``every`` batches."""
    count, start = [0], time.time()

    def counted(*args, **kwargs):
        if count[0] % every == 0:
            print(f'iteration {count[0]}, {time.time() - start:.0f} s', file=sys.stderr, flush=True)
        count[0] += 1
        return make_batch(*args, **kwargs)
    return counted


def with_bank_lr(adam: Callable, built: dict, mult: float) -> Callable:
    """The harness's ``Adam(net.parameters(), lr)`` with the built net's Gaussian bank in a group at ``mult`` x lr
    (the groups of ``train.bank_lr_mult``)."""
    from gaussiansr_plugin.models.gaussiansr_model import bank_lr_groups

    def make(params, lr, **kwargs):
        return adam(bank_lr_groups(built['net'], lr, mult), lr, **kwargs)
    return make


def run_race(race, peer: str, overrides: Dict[str, object], harness_args: List[str], eval_sets: List[str],
             crops: Optional[str], crop_photos: List[str], weights: Optional[str], bank_lr_mult: float = 1) -> None:
    """Train and score through the harness, then add SSIM, eval variants, crops and weights to its JSON."""
    built = {}
    harness_build = race.build
    if bank_lr_mult != 1:
        race.torch.optim.Adam = with_bank_lr(race.torch.optim.Adam, built, bank_lr_mult)

    def build(name):
        built['net'], fwd, built['up'] = build_ours(race, overrides) if peer == 'ours' else harness_build(name)
        return built['net'], fwd, built['up']

    race.build = build
    race.batch = with_progress(race.batch, every=500)
    sys.argv = ['quality_race.py', '--peer', peer, *harness_args]
    race.main()
    parser = argparse.ArgumentParser()
    parser.add_argument('--eval-dir', default='holdout')
    parser.add_argument('--out')
    known, _ = parser.parse_known_args(harness_args)
    net, up = built['net'].eval(), built['up']
    photos = race.load_dir(os.path.join(known.eval_dir, '*.png'))
    extra = {'variant': overrides, 'bank_lr_mult': bank_lr_mult, 'ssim': evaluate(race, up, photos),
             'bicubic_ssim': bicubic_ssim(race, photos)}
    for assignment in eval_sets:  # each on its own, from the trained configuration
        changes = parse_overrides([assignment])
        saved = {key: getattr(net, key) for key in changes}
        for key, value in changes.items():
            setattr(net, key, value)
        extra.setdefault('eval_variants', {})[assignment] = evaluate(race, up, photos)
        for key, value in saved.items():
            setattr(net, key, value)
    if crops:
        save_crops(race, up, [os.path.join(known.eval_dir, p) for p in crop_photos], crops, peer)
    if weights:
        torch.save(net.state_dict(), weights)
    if known.out:
        with open(known.out) as f:
            result = json.load(f)
        result.update(extra)
        with open(known.out, 'w') as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in extra.items() if k != 'bicubic_ssim'}))


def run_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def iteration_ms(path: str) -> str:
    """ms per iteration from the ``timing_<row>.json`` beside ``race_<row>.json`` (ablations.sh), else '-'."""
    timing = os.path.join(os.path.dirname(path), 'timing_' + run_name(path).replace('race_', '', 1) + '.json')
    if not os.path.isfile(timing):
        return '-'
    with open(timing) as f:
        return f"{json.load(f)['ms_per_iter']:.1f}"


def table(paths: List[str]) -> str:
    """Markdown: PSNR-Y gain over bicubic and SSIM-Y per scale, training seconds and (when timed alone) ms per
    iteration, one row per result file (and per evaluation variant)."""
    results = [(run_name(p), json.load(open(p)), iteration_ms(p)) for p in paths]
    scales = list(results[0][1]['holdout']) if results else []
    head = ' | '.join(f'x{s}' for s in scales)
    lines = [f'| run | {head} | SSIM {head} | train s | ms/iter | params |',
             '|---|' + '---|' * (2 * len(scales) + 3)]
    bicubic = next((r['bicubic_ssim'] for _, r, _ in results if 'bicubic_ssim' in r), None)
    if bicubic:
        lines.append('| bicubic | ' + ' | '.join(['+0.00'] * len(scales) + [f'{bicubic[s]:.4f}' for s in scales]) +
                     ' | - | - | - |')
    for name, r, ms in results:
        rows = [(name, r['holdout'], r.get('ssim', {}))]
        rows += [(f'{name} [{k}]', v, v) for k, v in r.get('eval_variants', {}).items()]
        for label, psnr, ssim in rows:
            gains = [f"{psnr[s]['psnr'] - r['holdout'][s]['bicubic']:+.2f}" for s in scales]
            ssims = [f"{ssim[s]['ssim']:.4f}" if s in ssim else '-' for s in scales]
            lines.append(f'| {label} | ' + ' | '.join(gains + ssims) +
                         f" | {r['train_s']:.0f} | {ms} | {r['params'] / 1e6:.3f} M |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--harness', default='.peers/quality_race.py')
    parser.add_argument('--peer', default='ours', choices=('ours', 'gaussiansr', 'liif'))
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='GaussianSR constructor override (ours only)')
    parser.add_argument('--eval-set', action='append', default=[], metavar='KEY=VALUE',
                        help='also score the trained net with this attribute changed (ours only)')
    parser.add_argument('--bank-lr-mult', type=float, default=1.0,
                        help="the bank's learning rate as a multiple of the harness's (ours only)")
    parser.add_argument('--crops', metavar='DIR', help='save x4/x8 crops of --crop-photos here')
    parser.add_argument('--crop-photos', nargs='+', default=['lxqt_butterfly.png', 'plasma_EveningGlow.png'],
                        help='file names in the eval dir')
    parser.add_argument('--save-weights', metavar='PTH')
    parser.add_argument('--timing', type=int, metavar='STEPS', help='only time STEPS training iterations')
    parser.add_argument('--device', default='cuda', help='the harness device (cpu only for a smoke run)')
    parser.add_argument('--table', nargs='+', metavar='JSON', help='print a table of finished runs and exit')
    args, rest = parser.parse_known_args()
    if args.table:
        print(table(sorted(p for pattern in args.table for p in glob.glob(pattern) or [pattern])))
        return
    overrides = parse_overrides(args.overrides)
    if args.peer != 'ours' and (overrides or args.eval_set or args.bank_lr_mult != 1):
        raise SystemExit('error: --set, --eval-set and --bank-lr-mult apply to --peer ours only')
    if not args.bank_lr_mult > 0:
        raise SystemExit(f'error: --bank-lr-mult must be > 0, got {args.bank_lr_mult}')
    race = load_harness(args.harness, args.device)
    torch.manual_seed(0)
    if args.timing:
        print(json.dumps({'variant': overrides, 'ms_per_iter': time_iterations(race, overrides, args.timing)}))
        return
    run_race(race, args.peer, overrides, [a for a in rest if a != '--'], args.eval_set, args.crops,
             args.crop_photos, args.save_weights, args.bank_lr_mult)


if __name__ == '__main__':
    main()
