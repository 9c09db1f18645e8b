"""scripts/race.py runs the team's quality harness with an ablation variant of ours (CPU smoke run)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, '..', 'shared', 'tools', 'quality_race.py')


@pytest.mark.skipif(not os.path.isfile(HARNESS), reason='the shared quality harness is not beside the checkout')
def test_variant_race_smoke(tmp_path):
    from gaussiansr_plugin.data.demo_photos import prepare_demo_photos
    prepare_demo_photos(str(tmp_path / 'photos'), progress=False)
    out = tmp_path / 'race.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--harness', HARNESS, '--device', 'cpu',
           '--set', 'num_gaussian_channels=4', '--set', 'encoder={type: edsr-baseline, num_feat: 8, num_block: 1}',
           '--set', 'mlp_hidden=[16]', '--set', 'bank_size=9', '--', '--iters', '2',
           '--train-dir', str(tmp_path / 'photos' / 'train'), '--eval-dir', str(tmp_path / 'photos' / 'val'),
           '--out', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result['iters'] == 2 and set(result['holdout']) == {'2', '3', '4', '2.4', '6', '12'}
    assert result['params'] < 20000  # the variant, not the default net, was trained
    table = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--table', str(out)],
                           capture_output=True, text=True, check=True).stdout
    assert '| x2 |' in table and 'race.json' in table


def test_bad_override_is_one_line():
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--set', 'radius'],
                         capture_output=True, text=True)
    assert run.returncode != 0 and run.stderr.strip() == "error: --set takes key=value, got 'radius'"
