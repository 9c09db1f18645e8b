"""Equal-budget quality race: ours (and its ablation variants), the official GaussianSR and LIIF, one racer per process.

Every racer is trained and scored by the harness in this file, so the same ``--seed`` gives every racer the same
batches and the same held-out crops:

- training photos: the PNGs (or lossless WebPs) of ``--train-dir``, loaded once as uint8 [3, H, W] on the device
  (each at least 192²);
- one batch: 16 items, ONE scale s ~ U(1, 4) per batch; per item a random photo, a random HR crop of side
  round(48 s), random hflip / vflip / transpose; LR = antialiased bicubic to 48², clamped, quantised to 8 bits;
  2304 query pixels of the HR crop drawn without replacement: coord [Q, 2] (y, x), pixel k of n at -1 + (2k + 1) / n,
  cell (2/H, 2/W), gt RGB [Q, 3] in [0, 1]. Every random draw comes from one CPU ``torch.Generator`` seeded by
  ``--seed``, so the batches do not depend on the model;
- L1 loss (for ours with ``--set bank_balance=W``, plus its load-balancing term; the loss history stays L1), Adam at
  a constant 1e-4, ``torch.manual_seed(seed)`` before the model is built;
- evaluation (at each ``--eval-at`` iteration up to ``--iters``, and at ``--iters``): PSNR-Y and SSIM-Y (BasicSR's
  ``calculate_psnr`` / ``calculate_ssim``, border ceil(s)) at x2, x3, x4, x2.4, x6 and x12 on a centre crop of each
  PNG of ``--eval-dir`` (LR side int(240 // s), HR side round(lr_side s), LR made as in training), the output
  rounded to 8 bits; bicubic upsampling of the same LR is scored once as the baseline. Evaluation runs in eval()
  and no_grad, inside ``torch.random.fork_rng``, so it changes neither the batches nor the training's random
  stream.

Racers take LR in [0, 1] and return RGB in [0, 1]: ``ours`` is ``ARCH_REGISTRY.get('GaussianSR')(**overrides)``
(``--set key=value``, values parsed as YAML); ``gaussiansr`` (kernel_size 5) and ``liif`` (local ensemble, feature
unfold, cell decode) are the peers' own ``models`` packages (edsr-baseline encoder, MLP [256] * 4) imported from
``--peer-root``/GaussianSR and ``--peer-root``/liif, wrapped with their (x - 0.5) / 0.5 normalisation and scored by
rendering every HR pixel in chunks of 30000 queries, as their test code does. Their code calls ``.cuda()``: CUDA
only.

The run is resumable: ``--state DIR`` holds one checkpoint (model, optimiser, batch generator, torch CPU and CUDA
random states, iteration, loss history, scores, training seconds), replaced atomically every ``--save-every``
iterations, at the end, and when ``--time-limit`` seconds of wall time since the process started are nearly used
(then the run saves, writes its JSON so far, prints ``paused at iteration N`` and exits 0; it keeps twice the slowest
step, the next evaluation's time, twice the save's and min(30 s, 5 %) in hand); the next start with the same
``--state`` resumes exactly where it stopped (bitwise on a CPU). ``--out`` (``race_<racer>.json``) is rewritten after
every evaluation, at a pause and at the end.

    python scripts/race.py --peer ours --set num_gaussian_channels=0 --train-dir datasets/demo_wallpapers/train \
        --eval-dir datasets/demo_wallpapers/val --iters 50000 --state state/ng0 --out results/race_ng0.json \
        --time-limit 540 --tf32
    python scripts/race.py --peer liif --peer-root .peers ... --out results/race_liif.json   # the same for LIIF
    bash scripts/race_all.sh results state 50000 540 default official liif   # rows side by side on one GPU
    python scripts/race.py --timing 50 --set radius=4        # ms per training iteration of the variant, alone
    python scripts/race.py --table results/race_*.json       # markdown tables of the runs so far
    python scripts/race.py --table results/race_*.json --pairs balance:official balance_s1:official_s1   # seed pairs
    python scripts/race.py --score results/default.pth --set cell_clip=null --eval-dir ...   # saved weights, rescored
"""
import argparse
import datetime
import glob
import json
import math
import os
import shlex
import sys
import time
import types
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

START = time.time()  # --time-limit counts from here, the imports of torch & co. included

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from json_results import read_result  # noqa: E402

BATCH = 16
LR_SIZE = 48
SAMPLE_Q = 2304
SCALE_RANGE = (1.0, 4.0)
LR = 1e-4
EVAL_SIDE = 240
EVAL_SCALES = (2, 3, 4, 2.4, 6, 12)
PEER_CHUNK = 30000
CROP_SCALES = (4, 8)
CROP_LR_SIDE = 48
CHECKPOINT = 'checkpoint.pth'
PEER_DIRS = {'gaussiansr': 'GaussianSR', 'liif': 'liif'}
PEER_SPECS = {  # the peers' train configs (train_edsr-baseline-gaussian-batch16.yaml, train_edsr-baseline-liif.yaml)
    'gaussiansr': {'name': 'gaussian-splatter', 'args': {
        'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
        'dec_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}, 'kernel_size': 5}},
    'liif': {'name': 'liif', 'args': {
        'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}},
        'local_ensemble': True, 'feat_unfold': True, 'cell_decode': True}},
}


class Batch(NamedTuple):
    """One training batch: lr [B, 3, 48, 48], coord / cell [B, Q, 2], gt [B, Q, 3] (all in [0, 1] where colours), and
    scale = HR side / 48."""
    lr: torch.Tensor
    coord: torch.Tensor
    cell: torch.Tensor
    gt: torch.Tensor
    scale: float


class Racer(NamedTuple):
    """A model in the harness's convention: ``forward(lr, coord, cell, scale) -> [B, Q, 3]`` and
    ``upsample(lr, H, W) -> [1, 3, H, W]``, LR and RGB in [0, 1]; ``net`` owns the parameters; ``aux_loss()``, called
    after each training forward: a term to add to the loss, or None."""
    net: torch.nn.Module
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
    upsample: Callable[[torch.Tensor, int, int], torch.Tensor]
    aux_loss: Callable[[], Optional[torch.Tensor]] = lambda: None


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable ``--set key=value`` of the scripts that build ours (into ``overrides``, ``parse_overrides``)."""
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE', help=help_text)


def parse_overrides(pairs: List[str]) -> Dict[str, object]:
    """``['radius=2', 'encoder={type: rdn}']`` -> ``{'radius': 2, 'encoder': {'type': 'rdn'}}``."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise SystemExit(f'error: --set takes key=value, got {pair!r}')
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


# ----------------------------------------------------------------------------------------------------- harness


def photo_paths(folder: str) -> List[str]:
    """The PNGs of ``folder``, or its WebPs when it has no PNG, sorted by name."""
    return sorted(glob.glob(os.path.join(folder, '*.png'))) or sorted(glob.glob(os.path.join(folder, '*.webp')))


def crop_photo_paths(folder: str, names: List[str]) -> List[str]:
    """The photos of ``folder`` (``photo_paths``) named ``names`` (file names without extension), in that order."""
    by_name = {os.path.splitext(os.path.basename(p))[0]: p for p in photo_paths(folder)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f'error: --crop-photos {" ".join(missing)}: not among the photos of {folder} '
                         f'({" ".join(sorted(by_name)) or "none"})')
    return [by_name[n] for n in names]


def load_photos(folder: str, device: torch.device, min_side: int) -> List[torch.Tensor]:
    """The PNGs of ``folder``, or its WebPs when it has no PNG (sorted by name), as uint8 RGB [3, H, W] on ``device``.
    Lossless WebP (``scripts/pack_photos.py``) holds the same pixels in ~22 % fewer bytes, which matters where the
    photos travel with a resumed state to a GPU job of limited upload."""
    import cv2
    paths = photo_paths(folder)
    if not paths:
        raise SystemExit(f'error: no PNG or WebP in {folder}')
    photos = []
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < min_side:
            raise SystemExit(f'error: {path} is unreadable or smaller than {min_side} pixels')
        photos.append(torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).to(device))
    return photos


def degrade(hr: torch.Tensor, size: int) -> torch.Tensor:
    """The race's LR of HR images [B, 3, H, W] in [0, 1]: antialiased bicubic to ``size``², 8-bit; [B, 3, s, s]."""
    lr = F.interpolate(hr, size=(size, size), mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)
    return (lr * 255).round() / 255


def make_batch(photos: List[torch.Tensor], gen: torch.Generator) -> Batch:
    """One training batch (see the module docstring); every random draw is taken from ``gen``."""
    from gaussiansr_plugin.archs.gaussian_util import make_coord
    device = photos[0].device
    low, high = SCALE_RANGE
    side = round(LR_SIZE * (low + (high - low) * torch.rand((), generator=gen).item()))
    crops, picks = [], []
    for _ in range(BATCH):
        im = photos[int(torch.randint(len(photos), (), generator=gen))]
        y0 = int(torch.randint(im.shape[1] - side + 1, (), generator=gen))
        x0 = int(torch.randint(im.shape[2] - side + 1, (), generator=gen))
        hflip, vflip, transpose = (torch.rand(3, generator=gen) < 0.5).tolist()
        crop = im[:, y0:y0 + side, x0:x0 + side]
        crop = crop.flip(-1) if hflip else crop
        crop = crop.flip(-2) if vflip else crop
        crops.append(crop.transpose(-2, -1) if transpose else crop)
        picks.append(torch.randperm(side * side, generator=gen)[:SAMPLE_Q])
    hr = torch.stack(crops).float() / 255
    idx = torch.stack(picks)  # [B, Q]
    # pinned and non-blocking on a GPU: a copy from pageable memory would wait for the GPU at every step
    idx = idx.pin_memory().to(device, non_blocking=True) if device.type == 'cuda' else idx.to(device)
    coord = make_coord((side, side), device=device)[idx]
    gt = hr.flatten(2).gather(2, idx[:, None].expand(-1, 3, -1)).transpose(1, 2)
    cell = torch.full_like(coord, 2 / side)
    return Batch(degrade(hr, LR_SIZE), coord, cell, gt, side / LR_SIZE)


def eval_crops(photos: List[torch.Tensor]) -> Dict[str, List[Tuple[torch.Tensor, np.ndarray]]]:
    """Per scale key, per photo: (LR [1, 3, lr_side, lr_side], HR HxWx3 uint8 RGB) of the centre crop."""
    crops = {}
    for s in EVAL_SCALES:
        lr_side = int(EVAL_SIDE // s)
        side = round(lr_side * s)
        crops[str(s)] = [(lr, to_uint8(hr)) for lr, hr in (centre_crop(im, side, lr_side) for im in photos)]
    return crops


def centre_crop(im: torch.Tensor, side: int, lr_side: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(LR [1, 3, lr_side, lr_side], HR [1, 3, side, side]) in [0, 1] of the centre ``side``² crop of a uint8 photo."""
    y0, x0 = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
    hr = im[:, y0:y0 + side, x0:x0 + side].float()[None] / 255
    return degrade(hr, lr_side), hr


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] RGB in [0, 1] -> HxWx3 uint8 RGB, clamped and rounded."""
    return (t[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)


def bicubic_up(lr: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Plain bicubic upsampling, the baseline of every score, [1, 3, h, w] -> [1, 3, H, W]."""
    return F.interpolate(lr, size=(h, w), mode='bicubic', align_corners=False)


def score(upsample: Callable[[torch.Tensor, int, int], torch.Tensor],
          crops: Dict[str, List[Tuple[torch.Tensor, np.ndarray]]]) -> Dict[str, Dict[str, float]]:
    """{scale: {psnr, ssim}}: mean PSNR-Y and SSIM-Y of ``upsample`` over the crops, border ceil(s)."""
    import gaussiansr_plugin  # noqa: F401  (makes BasicSR importable with the current torchvision)
    from basicsr.metrics import calculate_psnr, calculate_ssim
    scores = {}
    for key, pairs in crops.items():
        border, rows = math.ceil(float(key)), []
        for lr, gt in pairs:
            sr = to_uint8(upsample(lr, gt.shape[0], gt.shape[1]))
            sr, gt = sr[..., ::-1], gt[..., ::-1]  # BasicSR's metrics take BGR
            rows.append((calculate_psnr(sr, gt, border, test_y_channel=True),
                         calculate_ssim(sr, gt, border, test_y_channel=True)))
        psnr, ssim = np.mean(rows, axis=0)
        scores[key] = {'psnr': float(psnr), 'ssim': float(ssim)}
    return scores


def evaluate(racer: Racer, crops: Dict[str, List[Tuple[torch.Tensor, np.ndarray]]]) -> Dict[str, Dict[str, float]]:
    """``score`` of the racer in eval() and no_grad, leaving every random stream as it found it; back to train()."""
    lr = next(iter(crops.values()))[0][0]
    devices = [lr.device] if lr.is_cuda else []
    racer.net.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            return score(racer.upsample, crops)
    finally:
        racer.net.train()


# ----------------------------------------------------------------------------------------------------- racers


def build_ours(overrides: Dict[str, object], device: torch.device, bank_lr_mult: float) -> Tuple[Racer, list]:
    """A GaussianSR variant and its optimiser parameter groups (the bank at ``bank_lr_mult`` x the rate)."""
    import gaussiansr_plugin  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY
    from gaussiansr_plugin.models.gaussiansr_model import bank_lr_groups
    net = ARCH_REGISTRY.get('GaussianSR')(**overrides).to(device)
    groups = bank_lr_groups(net, LR, bank_lr_mult) if bank_lr_mult != 1 else [{'params': list(net.parameters())}]
    racer = Racer(net, lambda lr, coord, cell, scale: net(lr, coord, cell), lambda lr, h, w: net.upsample(lr, (h, w)),
                  net.take_balance_loss)
    return racer, groups


def load_ours(weights: str, overrides: Dict[str, object], device: torch.device) -> Racer:
    """Ours under the ``--set`` options with saved weights (``--save-weights``, a race state's model or a BasicSR
    checkpoint), in eval mode; one ``error:`` line when they do not fit."""
    from gaussiansr_plugin.errors import CheckpointError
    from gaussiansr_plugin.safe_load import load_weights, read_checkpoint, select_weights
    racer, _ = build_ours(overrides, device, 1.0)
    try:
        load_weights(racer.net, select_weights(read_checkpoint(weights))[0], weights, 'the network of --set')
    except CheckpointError as exc:
        raise SystemExit(f'error: {exc}')
    racer.net.eval()
    return racer


def score_weights(args: argparse.Namespace, device: torch.device) -> Dict[str, object]:
    """``--score``: {variant, precision, device, scores, bicubic} of saved weights of ours under the ``--set``
    options and ``--precision``, scored as a race scores (same crops, metrics, rounding)."""
    from gaussiansr_plugin.precision import inference_precision
    racer = load_ours(args.score, parse_overrides(args.overrides), device)
    crops = eval_crops(load_photos(args.eval_dir, device, EVAL_SIDE))
    with torch.no_grad(), inference_precision(args.precision, device.type):
        scores = score(racer.upsample, crops)
    return {'weights': os.path.basename(args.score), 'variant': parse_overrides(args.overrides),
            'precision': args.precision, 'device': device.type, 'scores': scores, 'bicubic': score(bicubic_up, crops)}


def import_peer_models(folder: str) -> types.ModuleType:
    """The peer's ``models`` package, imported from ``folder`` (its ``utils`` too; one peer per process)."""
    if not os.path.isdir(os.path.join(folder, 'models')):
        raise SystemExit(f'error: no peer code in {folder} (clone it there)')
    if 'models' in sys.modules or 'utils' in sys.modules:
        raise SystemExit('error: a module named models or utils is already imported; one peer per process')
    try:
        import tensorboardX  # noqa: F401  (the peers' utils.py imports it; their models never use it)
    except ImportError:
        sys.modules['tensorboardX'] = types.SimpleNamespace(SummaryWriter=None)
    sys.path.insert(0, os.path.abspath(folder))
    import models
    return models


def build_peer(peer: str, root: str, device: torch.device) -> Racer:
    """The official GaussianSR or LIIF in the harness's convention ([0, 1] in and out, (x - 0.5) / 0.5 inside)."""
    from gaussiansr_plugin.archs.gaussian_util import make_coord
    net = import_peer_models(os.path.join(root, PEER_DIRS[peer])).make(PEER_SPECS[peer]).to(device)
    official = peer == 'gaussiansr'

    def scale_arg(inp: torch.Tensor, scale: float) -> tuple:
        return (torch.full((inp.shape[0],), scale, device=inp.device),) if official else ()

    def forward(lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, scale: float) -> torch.Tensor:
        inp = (lr - 0.5) / 0.5
        pred = net(inp, coord, *scale_arg(inp, scale), cell) if official else net(inp, coord, cell)
        return pred * 0.5 + 0.5

    def upsample(lr: torch.Tensor, h: int, w: int) -> torch.Tensor:  # their test.py batched_predict
        inp = (lr - 0.5) / 0.5
        coord = make_coord((h, w), device=lr.device)[None]
        cell = torch.tensor([2 / h, 2 / w], device=lr.device).expand_as(coord).contiguous()
        extra = scale_arg(inp, h / lr.shape[-2])
        net.gen_feat(inp)
        preds = [net.query_rgb(coord[:, q:q + PEER_CHUNK], *extra, cell[:, q:q + PEER_CHUNK])
                 for q in range(0, h * w, PEER_CHUNK)]
        return (torch.cat(preds, 1) * 0.5 + 0.5).view(1, h, w, 3).permute(0, 3, 1, 2)

    return Racer(net, forward, upsample)


def build_racer(args: argparse.Namespace, device: torch.device) -> Tuple[Racer, torch.optim.Optimizer]:
    """The racer of ``args`` and its Adam, built after ``torch.manual_seed(args.seed)``."""
    torch.manual_seed(args.seed)
    if args.peer == 'ours':
        racer, groups = build_ours(parse_overrides(args.overrides), device, args.bank_lr_mult)
    else:
        racer = build_peer(args.peer, args.peer_root, device)
        groups = [{'params': list(racer.net.parameters())}]
    return racer, torch.optim.Adam(groups, LR)


# ----------------------------------------------------------------------------------------------------- state


class Race:
    """Training state of one racer: what the checkpoint holds, the JSON written from it and the pause clock."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.racer, self.opt = build_racer(args, device)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.iteration, self.loss, self.scores, self.train_s = 0, [], {}, 0.0
        self.window = torch.zeros((), dtype=torch.float64, device=device)  # loss sum of the current log window
        self.config = {'peer': args.peer, 'variant': parse_overrides(args.overrides), 'seed': args.seed,
                       'tf32': args.tf32, 'bank_lr_mult': args.bank_lr_mult}
        if args.cuda_graph:  # a recorded run is a row of its own (the keys of earlier states stay as they were)
            self.config['cuda_graph'] = True
        self.path = os.path.join(args.state, CHECKPOINT) if args.state else None
        self.eval_s = self.save_s = 0.0
        self.bicubic: Dict[str, Dict[str, float]] = {}

    def resume(self) -> None:
        """Load the checkpoint of ``--state`` if there is one."""
        if not self.path or not os.path.isfile(self.path):
            return
        ckpt = torch.load(self.path, map_location=self.device, weights_only=True)
        if ckpt['config'] != self.config:
            raise SystemExit(f'error: {self.path} is a run of {ckpt["config"]}, not of {self.config}')
        self.racer.net.load_state_dict(ckpt['model'])
        self.opt.load_state_dict(ckpt['optimizer'])
        self.gen.set_state(ckpt['batch_rng'].cpu())
        torch.set_rng_state(ckpt['cpu_rng'].cpu())
        if self.device.type == 'cuda' and ckpt['cuda_rng'] is not None:
            torch.cuda.set_rng_state(ckpt['cuda_rng'].cpu(), self.device)
        self.iteration, self.loss, self.train_s = ckpt['iteration'], list(ckpt['loss']), ckpt['train_s']
        self.window = ckpt['window'].to(self.device)
        self.scores = ckpt['scores']
        print(f'resumed at iteration {self.iteration}', flush=True)

    def save(self) -> None:
        """Write the checkpoint atomically (a temporary file, then ``os.replace``)."""
        if not self.path:
            return
        begin = time.time()
        os.makedirs(self.args.state, exist_ok=True)
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == 'cuda' else None
        # learning rates as numbers, not capturable: what --cuda-graph changed, undone for the checkpoint
        from gaussiansr_plugin.models.step_graph import portable_optimizer_state
        ckpt = {'config': self.config, 'model': self.racer.net.state_dict(),
                'optimizer': portable_optimizer_state(self.opt),
                'batch_rng': self.gen.get_state(), 'cpu_rng': torch.get_rng_state(), 'cuda_rng': cuda_rng,
                'iteration': self.iteration, 'loss': self.loss, 'window': self.window, 'scores': self.scores,
                'train_s': self.train_s}
        torch.save(ckpt, self.path + '.tmp')
        os.replace(self.path + '.tmp', self.path)
        self.save_s = time.time() - begin

    def result(self, eval_at: List[int], finished: bool) -> dict:
        """The JSON of the run so far."""
        args = self.args
        from gaussiansr_plugin.inference.profiling import device_name
        device = device_name(self.device)
        return {
            'racer': racer_name(args), 'peer': args.peer, 'variant': self.config['variant'],
            'bank_lr_mult': args.bank_lr_mult, 'seed': args.seed, 'tf32': args.tf32, 'cuda_graph': args.cuda_graph,
            'iterations_done': self.iteration, 'iters': args.iters, 'eval_at': eval_at, 'finished': finished,
            'scores': {str(k): v for k, v in sorted(self.scores.items())}, 'bicubic': self.bicubic,
            'loss': self.loss, 'loss_every': args.log_every, 'train_s': self.train_s,
            'params': sum(p.numel() for p in self.racer.net.parameters()),
            'meta': {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                     'torch': torch.__version__, 'device': device or self.device.type,
                     'command': shlex.join(['python', *sys.argv])},
        }

    def write_json(self, eval_at: List[int], finished: bool) -> None:
        if self.args.out:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.out)), exist_ok=True)
            with open(self.args.out + '.tmp', 'w') as f:
                json.dump(self.result(eval_at, finished), f, indent=1)
            os.replace(self.args.out + '.tmp', self.args.out)

    def must_pause(self, next_is_eval: bool, step_s: float) -> bool:
        """Whether the next iteration (plus its evaluation, a save and a margin) could overrun ``--time-limit``:
        twice the slowest step, the last evaluation's time (0.1 x the limit before the first), twice the last save's
        and min(30 s, 0.05 x the limit)."""
        limit = self.args.time_limit
        if limit is None:
            return False
        eval_s = (self.eval_s or 0.1 * limit) if next_is_eval else 0.0
        reserve = 2 * step_s + eval_s + 2 * self.save_s + min(30.0, 0.05 * limit)
        return time.time() - START + reserve >= limit


def racer_name(args: argparse.Namespace) -> str:
    """``race_<name>.json`` -> ``<name>``; without ``--out``, the peer."""
    if not args.out:
        return args.peer
    stem = os.path.splitext(os.path.basename(args.out))[0]
    return stem[len('race_'):] if stem.startswith('race_') else stem


# ----------------------------------------------------------------------------------------------------- run


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def train_step(racer: Racer, opt: torch.optim.Optimizer, batch: Batch) -> torch.Tensor:
    """One L1 / Adam step (plus the racer's ``aux_loss``); the L1 loss (detached), comparable across racers."""
    loss = (racer.forward(batch.lr, batch.coord, batch.cell, batch.scale) - batch.gt).abs().mean()
    aux = racer.aux_loss()
    opt.zero_grad(set_to_none=True)
    (loss if aux is None else loss + aux).backward()
    opt.step()
    return loss.detach()


class GraphedSteps:
    """``--cuda-graph``: ``train_step`` of ours recorded once as a CUDA graph, as ``train.cuda_graph`` trains
    (``models/step_graph.StepGraph``: ``WARMUP_STEPS`` eager steps on a side stream, then one capture, then a replay
    per batch; the batches keep their shapes); the Adam made capturable, its learning rate a device tensor. The host
    then launches one graph per step instead of each kernel. The Gumbel draws come from the graph's own random
    offsets, so a paused and resumed run matches an unpaused one in distribution, not bit for bit."""

    def __init__(self, race: 'Race', device: torch.device) -> None:
        from gaussiansr_plugin.models.step_graph import WARMUP_STEPS, StepGraph
        self.racer, self.opt = race.racer, race.opt
        self.graph = StepGraph(device)
        self.graph.prepare(self.opt)
        self.warmup_left = WARMUP_STEPS

    def _step(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        # scale only feeds the peers' forward, which --cuda-graph does not take
        return train_step(self.racer, self.opt, Batch(inputs['lr'], inputs['coord'], inputs['cell'], inputs['gt'], 0.0))

    def __call__(self, batch: Batch) -> torch.Tensor:
        inputs = {'lr': batch.lr, 'coord': batch.coord, 'cell': batch.cell, 'gt': batch.gt}
        if self.warmup_left:
            self.warmup_left -= 1
            with self.graph.side_stream():
                return self._step(inputs)
        if not self.graph.captured:
            self.opt.zero_grad(set_to_none=True)  # the recorded backward keeps the gradients in the graph's memory
            self.graph.capture(inputs, self._step)
        return self.graph.replay(inputs)


def run(args: argparse.Namespace, device: torch.device) -> None:
    """Train (resuming from ``--state``), evaluate at the eval points, pause or finish."""
    if args.cuda_graph and device.type != 'cuda':
        raise SystemExit('error: --cuda-graph needs a CUDA device')
    race = Race(args, device)
    photos = load_photos(args.train_dir, device, round(LR_SIZE * SCALE_RANGE[1]))
    crops = eval_crops(load_photos(args.eval_dir, device, EVAL_SIDE))
    race.bicubic = score(bicubic_up, crops)
    race.resume()
    step = GraphedSteps(race, device) if args.cuda_graph else (lambda batch: train_step(race.racer, race.opt, batch))
    eval_at = sorted({i for i in args.eval_at if i <= args.iters} | {args.iters})
    step_s, steps, segment = 0.0, 0, time.time()  # step_s: the slowest step but the first (compilation, warm-up)
    while race.iteration < args.iters:
        if race.must_pause(race.iteration + 1 in eval_at, step_s):
            synchronize(device)
            race.train_s += time.time() - segment
            race.save()
            race.write_json(eval_at, finished=False)
            print(f'paused at iteration {race.iteration}', flush=True)
            return
        begin = time.time()
        race.window += step(make_batch(photos, race.gen))
        race.iteration += 1
        if race.iteration % args.log_every == 0:
            race.loss.append(float(race.window) / args.log_every)
            race.window.zero_()
            print(f'iteration {race.iteration}, loss {race.loss[-1]:.4f}, {time.time() - START:.0f} s',
                  file=sys.stderr, flush=True)
        step_s, steps = (max(step_s, time.time() - begin) if steps else 0.0), steps + 1
        evaluate_now = race.iteration in eval_at and race.iteration not in race.scores
        if evaluate_now or race.iteration % args.save_every == 0 or race.iteration == args.iters:
            synchronize(device)
            race.train_s += time.time() - segment
            if evaluate_now:
                begin = time.time()
                race.scores[race.iteration] = evaluate(race.racer, crops)
                race.eval_s = time.time() - begin
                race.write_json(eval_at, finished=False)
            race.save()
            segment = time.time()
    if race.iteration not in race.scores:  # resumed from a run that had gone past --iters: score it there
        race.scores[race.iteration] = evaluate(race.racer, crops)
        race.save()
    race.write_json(eval_at, finished=True)
    finish(race.racer, args, device)
    print(json.dumps({'racer': racer_name(args), 'iteration': race.iteration,
                      'scores': race.scores[max(race.scores)]}), flush=True)


def finish(racer: Racer, args: argparse.Namespace, device: torch.device) -> None:
    """The end-of-run extras: ``--save-weights`` and ``--crops``."""
    if args.save_weights:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_weights)), exist_ok=True)
        torch.save(racer.net.state_dict(), args.save_weights)
    if args.crops:
        racer.net.eval()
        with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []), torch.no_grad():
            save_crops(racer, crop_photo_paths(args.eval_dir, args.crop_photos), args.crops, args.peer, device)
        racer.net.train()


def save_crops(racer: Racer, paths: List[str], folder: str, tag: str, device: torch.device) -> None:
    """For each photo and scale in CROP_SCALES: a centre crop of CROP_LR_SIDE * s HR pixels, its LR, bicubic and
    ``tag``'s output, as ``<photo>_x<s>_<kind>.png`` in ``folder`` (shared by the racers of one race)."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f'error: cannot read {path}')
        im = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).to(device)
        name = os.path.splitext(os.path.basename(path))[0]
        for s in CROP_SCALES:
            side = CROP_LR_SIDE * s
            if side > min(im.shape[1:]):
                print(f'note: {name} is smaller than a x{s} crop ({side} pixels); skipped', file=sys.stderr)
                continue
            lr, hr = centre_crop(im, side, CROP_LR_SIDE)
            images = {tag: racer.upsample(lr, side, side), 'hr': hr, 'lr': lr, 'bicubic': bicubic_up(lr, side, side)}
            for kind, image in images.items():
                cv2.imwrite(os.path.join(folder, f'{name}_x{s}_{kind}.png'), to_uint8(image)[..., ::-1])


def time_iterations(args: argparse.Namespace, device: torch.device, steps: int, warmup: int = 10) -> float:
    """Median ms of one training iteration (forward, L1, backward, Adam) of the racer on random photos; the batches
    are made beforehand, so only the model's step is timed."""
    from gaussiansr_plugin.inference.profiling import time_call
    racer, opt = build_racer(args, device)
    gen = torch.Generator().manual_seed(args.seed)
    photos = [torch.randint(256, (3, 256, 256), generator=gen, dtype=torch.uint8).to(device)]
    batches = iter([make_batch(photos, gen) for _ in range(steps + warmup)])
    return time_call(lambda: train_step(racer, opt, next(batches)), device, steps, warmup=warmup)


# ----------------------------------------------------------------------------------------------------- table


def loss_before(result: dict, iteration: int, span: int = 1000) -> Optional[float]:
    """The mean training loss over the ``span`` iterations before ``iteration`` (as logged every ``loss_every``:
    entry i averages iterations i * every + 1 ... (i + 1) * every), or None when none was logged."""
    every = result['loss_every']
    window = result['loss'][max(0, (iteration - span) // every):iteration // every]
    return sum(window) / len(window) if window else None


def load_results(paths: List[str]) -> List[dict]:
    """The result files that ``--out`` wrote, in the order given; a missing, unreadable or malformed file ends the
    script with one error line."""
    return [read_result(path, ('racer', 'scores'), 'scripts/race.py --out') for path in paths]


def table(results: List[dict]) -> str:
    """Markdown: per racer, one row per evaluated iteration with the PSNR-Y gain over bicubic (dB), the SSIM-Y per
    scale and the mean training loss of the 1000 iterations before (the same L1 on the same batches for every
    racer); with several racers, a second table of the differences ``ours - X`` (``ours``: the racer named
    ``default``, else the first ``--peer ours`` one) at the iterations both evaluated."""
    if not results:
        raise SystemExit('error: no result files')
    bicubic = results[0]['bicubic']
    scales = list(bicubic)
    head = ' | '.join(f'x{s}' for s in scales)
    rule = '|---|---|' + '---|' * 2 * len(scales)
    lines = ['bicubic PSNR-Y ' + ' / '.join(f"{bicubic[s]['psnr']:.2f}" for s in scales), '',
             f'| racer | iteration | {head} | SSIM {head} | loss, last 1k | train s | params |',
             rule + '---|---|---|',
             '| bicubic | - | ' + ' | '.join(['+0.00'] * len(scales) + [f"{bicubic[s]['ssim']:.4f}" for s in scales])
             + ' | - | - | - |']
    for r in results:
        for it, sc in r['scores'].items():
            cells = [f"{sc[s]['psnr'] - bicubic[s]['psnr']:+.2f}" for s in scales]
            cells += [f"{sc[s]['ssim']:.4f}" for s in scales]
            loss = loss_before(r, int(it))
            cells.append('-' if loss is None else f'{loss:.5f}')
            lines.append(f"| {r['racer']} | {it} | " + ' | '.join(cells) + f" | {r['train_s']:.0f} | "
                         f"{r['params'] / 1e6:.3f} M |")
    if len(results) > 1:
        ours = next((r for r in results if r['racer'] == 'default'),
                    next((r for r in results if r['peer'] == 'ours'), results[0]))
        lines += ['', f'| {ours["racer"]} − X | iteration | {head} | SSIM {head} |', rule]
        for r in results:
            for it in (i for i in ours['scores'] if i in r['scores'] and r is not ours):
                a, b = ours['scores'][it], r['scores'][it]
                cells = [f"{a[s]['psnr'] - b[s]['psnr']:+.2f}" for s in scales]
                cells += [f"{a[s]['ssim'] - b[s]['ssim']:+.4f}" for s in scales]
                lines.append(f"| {ours['racer']} − {r['racer']} | {it} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def pair_table(results: List[dict], pairs: List[str]) -> str:
    """Markdown: the PSNR-Y difference ``a - b`` of each pair ``a:b`` of racers (e.g. one per seed) at the iterations
    both evaluated, and their mean where every pair has the iteration."""
    by_name = {r['racer']: r for r in results}
    split = [pair.split(':') for pair in pairs]
    missing = sorted({name for pair in split for name in pair if name not in by_name})
    if any(len(pair) != 2 for pair in split) or missing:
        raise SystemExit(f'error: --pairs takes a:b of racers in the files; not found or malformed: '
                         f'{", ".join(missing) or " ".join(pairs)}')
    scales = list(next(iter(by_name.values()))['bicubic'])

    def diff(a: str, b: str, it: str) -> Optional[List[float]]:
        sa, sb = by_name[a]['scores'].get(it), by_name[b]['scores'].get(it)
        return None if sa is None or sb is None else [sa[s]['psnr'] - sb[s]['psnr'] for s in scales]

    def cell(values: Optional[List[float]]) -> str:
        return '–' if values is None else ' / '.join(f'{v:+.2f}' for v in values)

    iterations = sorted({it for a, b in split for it in by_name[a]['scores'] if it in by_name[b]['scores']}, key=int)
    head = ' / '.join(f'x{s}' for s in scales)
    lines = ['| iteration | ' + ' | '.join(f'{a} − {b} ({head})' for a, b in split) + ' | mean of the pairs |',
             '|---|' + '---|' * (len(split) + 1)]
    for it in iterations:
        diffs = [diff(a, b, it) for a, b in split]
        mean = None if None in diffs else [sum(col) / len(diffs) for col in zip(*diffs)]
        lines.append(f'| {it} | ' + ' | '.join(cell(d) for d in diffs) + f' | {cell(mean)} |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------- CLI


def int_list(text: str) -> List[int]:
    return [int(x) for x in text.split(',') if x.strip()]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from gaussiansr_plugin.precision import PRECISIONS
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--peer', default='ours', choices=('ours', *PEER_DIRS))
    parser.add_argument('--peer-root', default='.peers', help='folder holding the peers GaussianSR/ and liif/')
    add_set_argument(parser, 'GaussianSR constructor override, value parsed as YAML (ours only)')
    parser.add_argument('--bank-lr-mult', type=float, default=1.0,
                        help="the Gaussian bank's learning rate as a multiple of the race's (ours only)")
    parser.add_argument('--train-dir', help='training PNGs (or WebPs)')
    parser.add_argument('--eval-dir', help='held-out PNGs (or WebPs)')
    parser.add_argument('--iters', type=int, help='training iterations in all (a resumed run may raise it)')
    parser.add_argument('--eval-at', type=int_list, default=[6000, 11000, 25000, 50000], metavar='N,N,...',
                        help='evaluate at these iterations (those <= --iters) and at --iters')
    parser.add_argument('--state', metavar='DIR', help='checkpoint folder: resume from it, save into it')
    parser.add_argument('--save-every', type=int, default=1000, metavar='N', help='checkpoint every N iterations')
    parser.add_argument('--time-limit', type=float, metavar='SEC', help='pause (save and exit 0) before SEC s of wall')
    parser.add_argument('--log-every', type=int, default=100, metavar='N', help='loss history: mean per N iterations')
    parser.add_argument('--out', metavar='JSON', help='result file (race_<racer>.json names the racer)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tf32', action='store_true', help='allow TF32 matmuls and convolutions (else both off)')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='ours only, on CUDA: record the training step once as a CUDA graph and replay it')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--save-weights', metavar='PTH', help='the trained state_dict, at the end')
    parser.add_argument('--crops', metavar='DIR', help='save x4/x8 crops of --crop-photos here, at the end')
    parser.add_argument('--crop-photos', nargs='+', default=['lxqt_butterfly', 'plasma_EveningGlow'],
                        help='photos of the eval dir, named without extension (PNG or WebP)')
    parser.add_argument('--timing', type=int, metavar='STEPS', help='only time STEPS training iterations')
    parser.add_argument('--table', nargs='+', metavar='JSON', help='print markdown tables of result files and exit')
    parser.add_argument('--pairs', nargs='+', metavar='A:B', help="with --table: also the PSNR-Y differences A − B "
                        "of these pairs of racers (e.g. one pair per seed) and their mean")
    parser.add_argument('--score', metavar='PTH', help='only score these weights of ours (--save-weights) on '
                        '--eval-dir with --set options, e.g. inference options such as cell_clip')
    parser.add_argument('--precision', default='fp32', choices=PRECISIONS,
                        help='with --score: the inference precision (gaussiansr_plugin.precision). Default: fp32, the '
                        'exact reference the race scores with')
    args = parser.parse_args(argv)
    parse_overrides(args.overrides)  # fail early on a malformed --set
    if args.peer != 'ours' and (args.overrides or args.bank_lr_mult != 1):
        parser.error('--set and --bank-lr-mult apply to --peer ours only')
    if not args.bank_lr_mult > 0:
        parser.error(f'--bank-lr-mult must be > 0, got {args.bank_lr_mult}')
    if args.cuda_graph and (args.peer != 'ours' or args.timing or args.score):
        parser.error('--cuda-graph applies to a race of --peer ours only')
    if args.score and not (args.peer == 'ours' and args.eval_dir):
        parser.error('--score needs --peer ours and --eval-dir')
    if args.pairs and not args.table:
        parser.error('--pairs goes with --table')
    if not (args.table or args.timing or args.score) and not (args.train_dir and args.eval_dir and args.iters):
        parser.error('a race needs --train-dir, --eval-dir and --iters')
    if min(args.save_every, args.log_every) < 1 or (args.iters is not None and args.iters < 1):
        parser.error('--iters, --save-every and --log-every must be >= 1')
    if args.crops and args.eval_dir:
        crop_photo_paths(args.eval_dir, args.crop_photos)  # fail now, not after the training
    return args


def main() -> None:
    args = parse_args()
    if args.table:
        results = load_results(sorted(p for pattern in args.table for p in glob.glob(pattern) or [pattern]))
        pairs = pair_table(results, args.pairs) if args.pairs else ''  # a bad pair fails before any output
        print(table(results) + (f'\n\n{pairs}' if pairs else ''))
        return
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    if args.timing:
        ms = time_iterations(args, device, args.timing)
        print(json.dumps({'peer': args.peer, 'variant': parse_overrides(args.overrides), 'ms_per_iter': ms}))
        return
    if args.score:
        print(json.dumps(score_weights(args, device)))
        return
    run(args, device)


if __name__ == '__main__':
    main()
