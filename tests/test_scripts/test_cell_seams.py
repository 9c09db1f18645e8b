"""scripts/cell_seams.py: how much an upscaled image steps at the LR cell borders."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from basicsr.utils.registry import ARCH_REGISTRY

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'scripts'))
from cell_seams import seam_ratio  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'scripts', 'cell_seams.py')


def test_a_grid_at_the_lr_pitch_raises_the_ratio_and_content_unrelated_to_it_does_not():
    y, x = torch.meshgrid(torch.arange(52.0), torch.arange(52.0), indexing='ij')
    smooth = (0.5 + 0.4 * torch.sin(0.11 * x + 0.07 * y)).expand(1, 3, 52, 52)  # no relation to a 4-pixel grid
    cells = torch.rand(1, 1, 13, 13, generator=torch.Generator().manual_seed(0))
    grid = smooth + 0.1 * F.interpolate(cells, scale_factor=4, mode='nearest')  # a step at every LR cell border
    assert 0.9 < seam_ratio(smooth, 4) < 1.1
    assert seam_ratio(grid, 4) > 1.5
    assert seam_ratio(grid[..., 2:-2, 2:-2], 4) < 1  # the same steps half a cell off the borders


def test_cell_seams_reports_hr_bicubic_and_ours(tmp_path):
    torch.manual_seed(0)
    tiny = {'encoder': {'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, 'bank_size': 4, 'mlp_hidden': [8],
            'offset_encoding': 'periodic'}
    torch.save(ARCH_REGISTRY.get('GaussianSR')(**tiny).state_dict(), tmp_path / 'w.pth')
    photos = tmp_path / 'photos'
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f'p{i}.png'), np.random.default_rng(i).integers(0, 256, (250, 260, 3), np.uint8))
    cmd = [sys.executable, SCRIPT, '--weights', str(tmp_path / 'w.pth'), '--photos', str(photos), '--device', 'cpu',
           '--scales', '4', '12', '--json', str(tmp_path / 'seams.json'),
           '--set', 'encoder={type: edsr-baseline, num_feat: 8, num_block: 1}', '--set', 'bank_size=4',
           '--set', 'mlp_hidden=[8]', '--set', 'offset_encoding=periodic']
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ratios = json.loads((tmp_path / 'seams.json').read_text())['seam_ratio']
    assert set(ratios) == {'HR', 'ours', 'bicubic'} and all(set(r) == {'4', '12'} for r in ratios.values())
    assert all(0 < v < 10 for r in ratios.values() for v in r.values())
    assert '| ours |' in run.stdout
