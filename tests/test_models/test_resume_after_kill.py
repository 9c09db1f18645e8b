"""A run killed with SIGKILL and resumed with --auto_resume ends with the weights of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import torch

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')
TRAIN = {
    'datasets': {'train': {'num_worker_per_gpu': 2, 'dataset_enlarge_ratio': 10, 'persistent_workers': False}},
    'logger': {'print_freq': 4, 'save_checkpoint_freq': 8},
    'val': None,
}


def _train(cwd, *flags):
    cmd = [sys.executable, '-m', 'gaussiansr_plugin.train', '-opt', 'train.yml', *flags]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _params(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_kill_and_auto_resume_matches_uninterrupted_run(tmp_path, photo_dirs, train_yml):
    yml = train_yml(photo_dirs, name='resume', total_iter=24, **TRAIN)
    for run in ('straight', 'killed'):
        os.makedirs(tmp_path / run)
        (tmp_path / run / 'train.yml').write_text(yml)

    straight = _train(tmp_path / 'straight')
    assert straight.wait(timeout=300) == 0, straight.stdout.read()[-3000:]

    killed = _train(tmp_path / 'killed')
    states = tmp_path / 'killed' / 'experiments' / 'resume' / 'training_states'
    deadline = time.time() + 300
    while not (states / '8.state').exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (states / '24.state').exists(), 'the run finished before it could be killed'

    resumed = _train(tmp_path / 'killed', '--auto_resume')
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out[-3000:]
    last = max(int(f.split('.')[0]) for f in os.listdir(states) if f.endswith('.state'))
    assert last == 24

    models = 'experiments/resume/models/net_g_24.pth'
    a, b = _params(tmp_path / 'straight' / models), _params(tmp_path / 'killed' / models)
    for key in ('params', 'params_ema'):
        for name in a[key]:
            torch.testing.assert_close(b[key][name], a[key][name], rtol=1e-5, atol=1e-6, msg=f'{key}.{name}')
