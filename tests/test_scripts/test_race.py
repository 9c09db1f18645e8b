"""scripts/race.py runs the team's quality harness with an ablation variant of ours (CPU smoke run)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, '..', 'shared', 'tools', 'quality_race.py')


TINY = ['--set', 'num_gaussian_channels=4', '--set', 'encoder={type: edsr-baseline, num_feat: 8, num_block: 1}',
        '--set', 'mlp_hidden=[16]', '--set', 'bank_size=9']
needs_harness = pytest.mark.skipif(not os.path.isfile(HARNESS),
                                   reason='the shared quality harness is not beside the checkout')


def race_cmd(*args):
    return [sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--harness', HARNESS, '--device', 'cpu', *args]


@needs_harness
def test_variant_race_smoke(tmp_path):
    """A tiny variant trains through the harness; the JSON gains SSIM, an eval-time variant, crops and weights;
    the table and the figures read it back."""
    from gaussiansr_plugin.data.demo_photos import prepare_demo_photos
    prepare_demo_photos(str(tmp_path / 'photos'), progress=False)
    out = tmp_path / 'race.json'
    photo = sorted(os.listdir(tmp_path / 'photos' / 'val'))[0]
    cmd = race_cmd(*TINY, '--bank-lr-mult', '10', '--eval-set', 'eval_selection=soft',
                   '--crops', str(tmp_path / 'crops'), '--crop-photos', photo,
                   '--save-weights', str(tmp_path / 'w.pth'), '--',
                   '--iters', '2', '--train-dir', str(tmp_path / 'photos' / 'train'),
                   '--eval-dir', str(tmp_path / 'photos' / 'val'), '--out', str(out))
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result['iters'] == 2 and set(result['holdout']) == {'2', '3', '4', '2.4', '6', '12'}
    assert result['params'] < 20000  # the variant, not the default net, was trained
    for s, score in result['ssim'].items():  # our own evaluation repeats the harness's PSNR exactly
        assert abs(score['psnr'] - result['holdout'][s]['psnr']) < 1e-9 and 0 < score['ssim'] < 1
    assert set(result['eval_variants']['eval_selection=soft']) == set(result['holdout'])
    assert result['variant']['bank_size'] == 9 and result['bank_lr_mult'] == 10
    assert (tmp_path / 'w.pth').is_file()
    name = os.path.splitext(photo)[0]
    assert {f'{name}_x4_{kind}.png' for kind in ('lr', 'bicubic', 'ours', 'hr')} <= set(os.listdir(tmp_path / 'crops'))
    table = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--table', str(out)],
                           capture_output=True, text=True, check=True).stdout
    assert '| race |' in table and '| race [eval_selection=soft] |' in table and '| bicubic |' in table
    plot = [sys.executable, os.path.join(ROOT, 'scripts', 'plot_race.py'), '--loss', str(tmp_path / 'loss.png'),
            str(out), '--crops', str(tmp_path / 'crops'), '--out', str(tmp_path / 'crops.png')]
    printed = subprocess.run(plot, check=True, capture_output=True, text=True).stdout
    assert (tmp_path / 'loss.png').stat().st_size > 0 and (tmp_path / 'crops.png').stat().st_size > 0
    assert f'{name}_x4 ours: RGB PSNR ' in printed and f'{name}_x4 bicubic: RGB PSNR ' in printed


def test_bank_lr_mult_wraps_the_harness_optimiser(tiny_net_opt):
    import torch
    from basicsr.archs import build_network
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    from race import with_bank_lr
    net = build_network(tiny_net_opt)
    rest, bank = with_bank_lr(torch.optim.Adam, {'net': net}, 10)(net.parameters(), 1e-4).param_groups
    assert bank['params'] == [net.bank.raw] and bank['lr'] == pytest.approx(1e-3) and rest['lr'] == 1e-4
    assert len(rest['params']) == len(list(net.parameters())) - 1


@needs_harness
def test_timing_mode():
    run = subprocess.run(race_cmd('--timing', '2', *TINY), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    timing = json.loads(run.stdout)
    assert timing['variant']['bank_size'] == 9 and timing['ms_per_iter'] > 0


def test_bad_override_is_one_line():
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--set', 'radius'],
                         capture_output=True, text=True)
    assert run.returncode != 0 and run.stderr.strip() == "error: --set takes key=value, got 'radius'"
