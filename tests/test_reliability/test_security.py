"""Crafted pickles are refused wherever the package reads a checkpoint, and batch outputs stay inside OUT."""
import ast
import glob
import os
import pickle
import subprocess
import sys

import pytest
import torch
import yaml
from packaging import version

from gaussiansr_plugin.archs.encoders import build_encoder
from gaussiansr_plugin.cli import basicsr_fixes
from gaussiansr_plugin.errors import CheckpointError, UserError
from gaussiansr_plugin.inference.batch import check_destination, folder_jobs
from gaussiansr_plugin.safe_load import safe_torch_load
from shared_helpers import as_setup_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


class RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain pickle would run the command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


@pytest.fixture
def evil(tmp_path):
    """(a checkpoint whose unpickling would create ``marker``, marker)."""
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth'
    torch.save({'params': RunsCode(f'touch {marker}'), 'iter': 1, 'epoch': 0}, path)
    return path, marker


def _torch_load_calls(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == 'torch.load':
            yield node


def test_every_torch_load_in_the_package_passes_weights_only_true():
    files = glob.glob(os.path.join(ROOT, 'gaussiansr_plugin', '**', '*.py'), recursive=True)
    files += glob.glob(os.path.join(ROOT, 'scripts', '*.py'))
    calls = 0
    for path in files:
        for call in _torch_load_calls(path):
            calls += 1
            keywords = {k.arg: k.value for k in call.keywords}
            assert 'weights_only' in keywords and ast.literal_eval(keywords['weights_only']) is True, \
                f'{path}:{call.lineno} calls torch.load without weights_only=True'
    assert calls >= 1  # safe_load.py


def test_this_torch_refuses_code_by_default(evil):
    """BasicSR 1.4.2's ``load_network`` calls ``torch.load`` without ``weights_only``; since torch 2.6 the default is
    True, so even BasicSR's own loader refuses the file here. GaussianSRModel does not rely on that default."""
    path, marker = evil
    assert version.parse(torch.__version__.split('+')[0]) >= version.parse('2.6')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location='cpu')
    with pytest.raises(CheckpointError, match=r'refusing to load .*evil\.pth: it references Python code \(\S*system\)'):
        safe_torch_load(str(path))
    assert not marker.exists()


def test_basicsr_train_refuses_a_crafted_pretrain_network_g(tmp_path, photo_dirs, train_yml, evil):
    path, marker = evil
    yml = yaml.safe_load(train_yml(photo_dirs, name='evil', total_iter=2, val=None))
    yml['path']['pretrain_network_g'] = str(path)
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(yml))
    proc = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.train', '-opt', 'train.yml'], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=180)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and not marker.exists()
    assert lines[-1].startswith(f'error: cannot build GaussianSRModel: path.pretrain_network_g: refusing to load '
                                f'{path}: it references Python code'), lines[-1]
    assert [line for line in lines if line.startswith('error:')] == lines[-1:]


def test_crafted_resume_state_and_encoder_weights_are_refused(tmp_path, evil):
    path, marker = evil
    states = tmp_path / 'training_states'
    states.mkdir()
    os.replace(path, states / '7.state')
    opt = {'auto_resume': True, 'num_gpu': 0, 'path': {'training_states': str(states)}}
    load = as_setup_step(basicsr_fixes.load_resume_state)
    with pytest.raises(UserError, match=r'^resume state: refusing to load .*7\.state: it references Python code'):
        load(opt)
    with pytest.raises(CheckpointError, match=r'refusing to load .*7\.state'):
        build_encoder({'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1,
                       'pretrain_path': str(states / '7.state')})
    assert not marker.exists()


def test_batch_destinations_never_leave_the_output_folder(tmp_path):
    src, out = tmp_path / 'in', tmp_path / 'out'
    (src / 'a..b').mkdir(parents=True)
    for name in ('x.png', 'a..b/..y.png'):
        (src / name).write_bytes(b'')
    jobs = folder_jobs(str(src), str(out))
    assert sorted(os.path.relpath(dst, out) for _, dst in jobs) == ['a..b/..y.png', 'x.png']
    for _, dst in jobs:
        check_destination(dst, str(out))
    with pytest.raises(UserError, match='outside'):
        check_destination(str(out / '..' / 'escaped.png'), str(out))
