"""Each fix of cli/basicsr_fixes.py: the upstream BasicSR 1.4.2 bug on BasicSR's own function, and our replacement
without it; and the version guard."""
import socket

import pytest
import torch
import yaml

import basicsr
from gaussiansr_plugin.cli import basicsr_fixes
from gaussiansr_plugin.cli.basicsr_fixes import FIXES, upstream
from gaussiansr_plugin.errors import UserError

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason='the upstream bug shows on machines without a GPU')


def _fixed(module: str, attr: str):
    fix = next(f for f in FIXES if (f.module, f.attr) == (module, attr))
    return fix.fixed(upstream(module, attr))


def test_every_fix_names_its_bug_and_replaces_a_basicsr_attribute():
    import importlib
    for fix in FIXES:
        assert fix.bug and fix.module.startswith('basicsr.') and hasattr(importlib.import_module(fix.module), fix.attr)


def test_another_basicsr_version_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(basicsr, '__version__', '1.5.0')
    with pytest.raises(UserError, match=r'^BasicSR 1\.5\.0 is installed, .* written for 1\.4\.2 .*basicsr==1\.4\.2$'):
        basicsr_fixes.apply()


def _state_opt(tmp_path, auto_resume: bool) -> dict:
    states = tmp_path / 'experiments_elsewhere' / 'run' / 'training_states'
    states.mkdir(parents=True)
    torch.save({'epoch': 1, 'iter': 5, 'optimizers': [], 'schedulers': []}, states / '5.state')
    return {'name': 'run', 'auto_resume': auto_resume, 'num_gpu': 0, 'network_g': {},
            'path': {'training_states': str(states), 'models': str(tmp_path),
                     'resume_state': None if auto_resume else str(states / '5.state')}}


def test_resume_state_is_found_in_its_folder_and_loaded_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert upstream('basicsr.train', 'load_resume_state')(_state_opt(tmp_path / 'a', True)) is None  # not found
    opt = _state_opt(tmp_path / 'b', True)
    state = _fixed('basicsr.train', 'load_resume_state')(opt)
    assert state['iter'] == 5 and opt['_resume_point'] == {'epoch': 1, 'iter': 5}


@needs_no_gpu
def test_resume_state_upstream_needs_a_gpu(tmp_path):
    with pytest.raises((RuntimeError, AssertionError)):
        upstream('basicsr.train', 'load_resume_state')(_state_opt(tmp_path, False))
    assert _fixed('basicsr.train', 'load_resume_state')(_state_opt(tmp_path / 'b', False))['epoch'] == 1


def _single_process_env(monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for key, value in {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
                       'MASTER_PORT': str(port)}.items():
        monkeypatch.setenv(key, value)


@needs_no_gpu
def test_init_dist_without_a_gpu(monkeypatch):
    _single_process_env(monkeypatch)
    with pytest.raises(ZeroDivisionError):  # rank % torch.cuda.device_count()
        upstream('basicsr.utils.options', 'init_dist')('pytorch')
    _fixed('basicsr.utils.options', 'init_dist')('pytorch')
    try:
        assert torch.distributed.get_backend() == 'gloo' and torch.distributed.get_world_size() == 1
    finally:
        torch.distributed.destroy_process_group()


def test_a_run_on_cpus_gets_gloo_also_beside_a_gpu(monkeypatch):
    """``num_gpu: 0`` under ``--launcher pytorch`` trains on CPUs: NCCL, the GPU default, cannot reduce CPU tensors."""
    _single_process_env(monkeypatch)
    basicsr_fixes.init_dist('pytorch', on_cpu=True)
    try:
        assert torch.distributed.get_backend() == 'gloo'
    finally:
        torch.distributed.destroy_process_group()


def test_datasets_keep_their_own_scale(tmp_path, monkeypatch):
    yml = tmp_path / 'test.yml'
    yml.write_text(yaml.safe_dump({
        'name': 'scales', 'model_type': 'GaussianSRModel', 'num_gpu': 0, 'scale': 4, 'path': {},
        'datasets': {'test_1': {'name': 'a', 'type': 'ArbitraryScaleTestDataset', 'scale': 2.5},
                     'test_2': {'name': 'b', 'type': 'ArbitraryScaleTestDataset'}}}))
    monkeypatch.setattr('sys.argv', ['basicsr test', '-opt', str(yml)])
    opt, _ = upstream('basicsr.test', 'parse_options')(str(tmp_path), is_train=False)
    assert [d['scale'] for d in opt['datasets'].values()] == [4, 4]
    opt, _ = _fixed('basicsr.test', 'parse_options')(str(tmp_path), is_train=False)
    assert [d['scale'] for d in opt['datasets'].values()] == [2.5, 4]


def test_a_resumed_epoch_continues_instead_of_restarting():
    dataset = list(range(8))
    whole = upstream('basicsr.train', 'EnlargedSampler')(dataset, 1, 0)
    whole.set_epoch(3)
    resumed = _fixed('basicsr.train', 'EnlargedSampler')(dataset, 1, 0)
    resumed.resume_from(epoch=3, current_iter=3 * 4 + 2, batch_size=2)  # 4 batches per epoch, 2 done in epoch 3
    resumed.set_epoch(3)
    assert list(resumed) == list(whole)[4:]  # upstream would replay all 8, the first 4 a second time
