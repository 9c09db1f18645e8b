"""scripts/bank_stats.py: usage histogram and bank movement of a trained GaussianSR."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import torch

from basicsr.utils.registry import ARCH_REGISTRY

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'scripts', 'bank_stats.py')
OPTIONS = ['encoder={type: edsr-baseline, num_feat: 8, num_block: 1}', 'bank_size=9', 'mlp_hidden=[8]',
           'kernel_refine=true']


def test_bank_stats_counts_every_pixel_and_measures_movement(tmp_path):
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GaussianSR')(encoder={'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1},
                                          bank_size=9, mlp_hidden=[8], kernel_refine=True)
    with torch.no_grad():
        net.bank.raw[0, 0] += 1.0  # sigma_y of kernel 0 moves
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'w.pth')
    for i in range(2):
        cv2.imwrite(str(tmp_path / f'p{i}.png'), np.random.default_rng(i).integers(0, 256, (32, 40, 3), np.uint8))
    cmd = [sys.executable, SCRIPT, '--weights', str(tmp_path / 'w.pth'), '--photos', str(tmp_path), '--device', 'cpu',
           '--json', str(tmp_path / 'stats.json')] + [a for o in OPTIONS for a in ('--set', o)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    stats = json.loads((tmp_path / 'stats.json').read_text())
    assert stats['pixels'] == 2 * 8 * 10 == sum(stats['usage'])
    assert 0 < stats['max_share'] <= 1 and stats['kernels_used'] >= 1
    assert stats['moved_max']['sigma_y'] > 0.05 and stats['moved_max']['rho'] == 0
    assert set(stats['refinement_mean_abs']) == {'sigma_y', 'sigma_x', 'rho', 'opacity'}


def test_bank_stats_plots_the_usage_of_json_files(tmp_path):
    stats = tmp_path / 'bank_a.json'
    stats.write_text(json.dumps({'usage': [5, 0, 20, 1], 'kernels_used': 3}))
    subprocess.run([sys.executable, SCRIPT, '--plot', str(tmp_path / 'usage.png'), str(stats)], check=True,
                   capture_output=True, timeout=120)
    assert cv2.imread(str(tmp_path / 'usage.png')) is not None
    proc = subprocess.run([sys.executable, SCRIPT, '--plot', str(tmp_path / 'x.png')], capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip().startswith('error: --plot takes')
