"""Non-finite loss or gradients: the step is skipped and logged; ``max_nan_steps`` in a row stop the run with one
line naming the iteration and the last good checkpoint (exit status 1 from ``basicsr train``)."""
import os
import re
import subprocess
import sys

import pytest
import torch

from basicsr.models import build_model
from basicsr.utils import MessageLogger
from gaussiansr_plugin.errors import TrainingDiverged
from shared_helpers import model_opt, query_batch

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


def _opt(tiny_net_opt, tmp_path, **train):
    return model_opt(tiny_net_opt, tmp_path, name='nan', **{'ema_decay': 0.9, **train})


def _batch(gt_value=None):
    return query_batch(0, gt_value)


def _snapshot(model):
    return ([p.detach().clone() for p in model.net_g.parameters()],
            [p.detach().clone() for p in model.net_g_ema.parameters()], len(model.optimizer_g.state))


def _unchanged(model, snapshot):
    params, ema, optim_states = snapshot
    return (all(torch.equal(a, p) for a, p in zip(params, model.net_g.parameters()))
            and all(torch.equal(a, p) for a, p in zip(ema, model.net_g_ema.parameters()))
            and len(model.optimizer_g.state) == optim_states)


@pytest.mark.parametrize('gt_value', [float('nan'), float('inf')])
def test_non_finite_loss_skips_the_step_and_logs(tiny_net_opt, tmp_path, basicsr_log, gt_value):
    model = build_model(_opt(tiny_net_opt, tmp_path, max_nan_steps=3))
    before = _snapshot(model)
    model.feed_data(_batch(gt_value))
    model.optimize_parameters(7)
    assert 'iter 7: non-finite loss, step skipped (1/3)' in basicsr_log.text
    assert _unchanged(model, before)  # weights, EMA and Adam state untouched
    assert all(p.grad is None for p in model.net_g.parameters())
    assert model.get_current_log()['l_pix'] != model.get_current_log()['l_pix']  # nan


def test_non_finite_gradient_skips_the_step(tiny_net_opt, tmp_path, basicsr_log):
    for train in ({}, {'grad_clip': 0.1}):
        model = build_model(_opt(tiny_net_opt, tmp_path, **train))
        before = _snapshot(model)
        weight = model.net_g.decoder.layers[0].weight
        handle = weight.register_hook(lambda g: g * float('inf'))
        model.feed_data(_batch())
        model.optimize_parameters(1)
        assert 'iter 1: non-finite gradient, step skipped (1/10)' in basicsr_log.text
        assert _unchanged(model, before)
        handle.remove()
        model.optimize_parameters(2)  # the next finite step trains and resets the count
        assert not _unchanged(model, before) and model._nan_steps == 0
        basicsr_log.messages.clear()


def test_the_gradient_check_flags_one_nan_and_not_a_huge_finite_gradient(tiny_net_opt, tmp_path):
    """Without grad_clip the check sums each gradient's magnitudes: one NaN element anywhere is non-finite, a finite
    gradient whose 2-norm would overflow float32 is not."""
    model = build_model(_opt(tiny_net_opt, tmp_path))
    params = list(model.net_g.parameters())
    for p in params:
        p.grad = torch.zeros_like(p)
    assert bool(model._gradients_finite(None))
    params[-1].grad[(0,) * params[-1].dim()] = 1e30
    assert bool(model._gradients_finite(None))
    params[0].grad[(-1,) * params[0].dim()] = float('nan')
    assert not bool(model._gradients_finite(None))


def test_max_nan_steps_in_a_row_raise_naming_iteration_and_checkpoint(tiny_net_opt, tmp_path):
    model = build_model(_opt(tiny_net_opt, tmp_path, max_nan_steps=3))
    for name in ('net_g_1.pth', 'net_g_2.pth', 'net_g_3.pth', 'net_g_ema_2.pth'):
        (tmp_path / name).write_bytes(b'')
    bad, good = _batch(float('nan')), _batch()
    for it, batch in enumerate([good, bad, bad, good, good, bad, bad], start=1):  # two short streaks: no stop
        model.feed_data(batch)
        model.optimize_parameters(it)
    assert model._nan_steps == 2 and model._last_finite_iter == 5
    model.feed_data(bad)
    with pytest.raises(TrainingDiverged) as info:
        model.optimize_parameters(8)
    message = str(info.value)
    assert 'training diverged at iter 8: 3 non-finite steps in a row' in message
    assert f'last good checkpoint: {tmp_path / "net_g_3.pth"}' in message and 'before iter 5' in message
    assert '\n' not in message

    empty = tmp_path / 'empty'
    empty.mkdir()
    opt = _opt(tiny_net_opt, tmp_path, max_nan_steps=1)
    opt['path']['models'] = str(empty)
    model = build_model(opt)
    model.feed_data(bad)
    with pytest.raises(TrainingDiverged, match=rf'iter 1: .*no checkpoint saved before iter 0 .* in {empty}'):
        model.optimize_parameters(1)
    with pytest.raises(ValueError, match='max_nan_steps'):
        build_model(_opt(tiny_net_opt, tmp_path, max_nan_steps=0))


def test_message_logger_prints_nan(tiny_net_opt, tmp_path, basicsr_log):
    """BasicSR's MessageLogger formats ``log_dict`` with ``:.4e``; a skipped step's ``nan`` must print, not crash."""
    model = build_model(_opt(tiny_net_opt, tmp_path))
    model.feed_data(_batch(float('nan')))
    model.optimize_parameters(1)
    opt = {'name': 'nan', 'logger': {'print_freq': 1, 'use_tb_logger': False}, 'train': {'total_iter': 10}}
    logger = MessageLogger(opt, start_iter=0)
    logger({'epoch': 0, 'iter': 1, 'lrs': model.get_current_learning_rate(), 'time': 0.1, 'data_time': 0.01,
            **model.get_current_log()})
    assert 'l_pix: nan' in basicsr_log.text


def test_basicsr_train_reports_divergence_as_one_line(tmp_path, photo_dirs, train_yml):
    """A learning rate multiplied by 1e33 at iteration 4 makes the weights overflow: iterations 5 and 6 are
    non-finite, and with ``max_nan_steps: 2`` the run stops at iteration 6 (deterministic: Adam's first steps move
    every weight by about the learning rate)."""
    yml = train_yml(
        photo_dirs,
        name='diverge',
        total_iter=20,
        train={'scheduler': {'type': 'MultiStepLR', 'milestones': [3], 'gamma': 1e33}, 'max_nan_steps': 2},
        val=None,
        logger={'print_freq': 1, 'save_checkpoint_freq': 1})
    (tmp_path / 'train.yml').write_text(yml)
    proc = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.train', '-opt', 'train.yml'], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert 'Traceback' not in proc.stderr
    assert [line for line in lines if line.startswith('error:')] == lines[-1:]
    models = tmp_path / 'experiments' / 'diverge' / 'models'
    assert re.fullmatch(
        rf'error: training diverged at iter 6: 2 non-finite steps in a row \(the last: loss\); last good checkpoint: '
        rf'{re.escape(str(models / "net_g_3.pth"))} .*', lines[-1]), lines[-1]
    assert 'l_pix: nan' in proc.stderr  # the skipped step was logged by BasicSR's message logger


def _fused_opt(tiny_net_opt, tmp_path, **train):
    """A fused Adam (the GPU default): non-finite steps are skipped on the device and read by the host later."""
    return _opt(tiny_net_opt, tmp_path, optim_g={'type': 'Adam', 'lr': 1e-3, 'fused': True}, **train)


def test_a_fused_optimizer_skips_on_the_device_and_reports_later(tiny_net_opt, tmp_path, basicsr_log):
    model = build_model(_fused_opt(tiny_net_opt, tmp_path, max_nan_steps=3))
    params, ema, _ = _snapshot(model)
    model.feed_data(_batch(float('nan')))
    model.optimize_parameters(7)
    assert 'step skipped' not in basicsr_log.text  # not read yet
    assert all(torch.equal(a, p) for a, p in zip(params, model.net_g.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(ema, model.net_g_ema.parameters()))
    assert all(float(s['step']) == 0 and not s['exp_avg'].any() for s in model.optimizer_g.state.values())
    log = model.get_current_log()
    assert 'iter 7: non-finite loss, step skipped (1/3)' in basicsr_log.text
    assert log['l_pix'] != log['l_pix']
    model.feed_data(_batch())
    model.optimize_parameters(8)
    assert not all(torch.equal(a, p) for a, p in zip(params, model.net_g.parameters()))
    assert model.get_current_log()['l_pix'] > 0 and model._nan_steps == 0 and model._last_finite_iter == 8


def test_device_skips_match_host_skips(tiny_net_opt, tmp_path):
    """The same batches, bad ones among them, give the same weights, EMA and log whether the host reads each step's
    verdict at once or a few steps later (a fused Adam either way; the EMA's factor is a device tensor, so equal to
    rounding)."""
    bad, good = _batch(float('nan')), _batch()
    models = []
    for on_device in (False, True):
        torch.manual_seed(0)  # the same weights and Gumbel draws
        model = build_model(_fused_opt(tiny_net_opt, tmp_path))
        if not on_device:
            model.optimizer_g._step_supports_amp_scaling = False  # the host-read path, with the same fused kernel
        for it, batch in enumerate([good, bad, good, good, bad, good], start=1):
            model.feed_data(batch)
            model.optimize_parameters(it)
        models.append((model, model.get_current_log()))
    (host, host_log), (device, device_log) = models
    assert all(torch.equal(a, b) for a, b in zip(host.net_g.parameters(), device.net_g.parameters()))
    ema_pairs = zip(host.net_g_ema.parameters(), device.net_g_ema.parameters())
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in ema_pairs)
    assert host_log == device_log and host._nan_steps == device._nan_steps == 0


@pytest.mark.parametrize('train', [{}, {'grad_clip': 1.0}])
def test_device_skipping_steps_fetch_once_per_max_nan_steps(tiny_net_opt, tmp_path, monkeypatch, train):
    model = build_model(_fused_opt(tiny_net_opt, tmp_path, max_nan_steps=3, **train))
    model.feed_data(_batch())
    fetches = []
    for name in ('item', 'tolist', '__bool__', '__float__', 'cpu', 'numpy'):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _name=name, _f=original, **k: fetches.append(_name)
                            or _f(self, *a, **k))
    for it in range(1, 7):
        model.optimize_parameters(it)
    monkeypatch.undo()
    assert fetches == ['tolist', 'tolist']  # after steps 3 and 6


def test_device_skips_raise_at_the_next_read_naming_the_iteration(tiny_net_opt, tmp_path):
    model = build_model(_fused_opt(tiny_net_opt, tmp_path, max_nan_steps=3))
    (tmp_path / 'net_g_3.pth').write_bytes(b'')
    bad, good = _batch(float('nan')), _batch()
    for it, batch in enumerate([good, good, good, good, bad, bad], start=1):  # read after steps 3 and 6
        model.feed_data(batch)
        model.optimize_parameters(it)
    assert model._nan_steps == 2 and model._last_finite_iter == 4
    model.feed_data(bad)
    model.optimize_parameters(7)  # the third in a row, not read yet
    with pytest.raises(TrainingDiverged, match=r'iter 7: 3 non-finite steps in a row .*net_g_3.pth.*before iter 4'):
        model.save(0, 7)  # read before a checkpoint is written
    assert sorted(os.listdir(tmp_path)) == ['net_g_3.pth']


def test_a_state_of_an_unfused_adam_resumes_on_the_host_path(tiny_net_opt, tmp_path):
    """A training state saved before Adam was fused brings ``fused: False`` into the groups on resume: the step then
    reads its verdict at once instead of handing ``found_inf`` to an unfused Adam (which refuses it)."""
    old = build_model(_opt(tiny_net_opt, tmp_path))
    old.feed_data(_batch())
    old.optimize_parameters(1)
    model = build_model(_fused_opt(tiny_net_opt, tmp_path))
    model.optimizer_g.load_state_dict(old.optimizer_g.state_dict())
    model.feed_data(_batch(float('nan')))
    model.optimize_parameters(2)
    assert model._nan_steps == 1  # read at once
    model.feed_data(_batch())
    model.optimize_parameters(3)
    assert model._nan_steps == 0 and model._last_finite_iter == 3
