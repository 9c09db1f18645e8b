"""Checkpoints are written atomically, and under DDP a step with a non-finite loss on one rank is skipped by all."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gaussiansr_plugin.models import checkpoint_io
from gaussiansr_plugin.models.checkpoint_io import atomic_torch_save, checkpoint_before
from gaussiansr_plugin.models.step_guard import step_stats


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / 'net_g_5.pth'
    atomic_torch_save({'params': {'w': torch.ones(2)}}, str(target))

    def dies_half_way(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt  # as a kill or Ctrl-C during torch.save

    monkeypatch.setattr(checkpoint_io.torch, 'save', dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'params': {'w': torch.zeros(2)}}, str(target))
    assert os.listdir(tmp_path) == ['net_g_5.pth']  # no temporary file left behind
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)['params']['w'], torch.ones(2))


def test_checkpoint_before_picks_the_newest_earlier_network(tmp_path):
    for name in ('net_g_4.pth', 'net_g_12.pth', 'net_g_30.pth', 'net_g_latest.pth', 'net_g_ema_20.pth', 'x.pth'):
        (tmp_path / name).write_bytes(b'')
    assert checkpoint_before(str(tmp_path), 30) == str(tmp_path / 'net_g_12.pth')
    assert checkpoint_before(str(tmp_path), 4) is None
    assert checkpoint_before(str(tmp_path / 'missing'), 100) is None


def _rank(rank, init_file, losses, results):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        grads_finite = torch.tensor(True)
        rows = [step_stats([torch.tensor(v)], grads_finite, distributed=True).tolist() for v in losses[rank]]
        results.put((rank, [(None, False) if bad_loss else (value, True) for value, bad_loss, _ in rows]))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_agree_on_skipping_a_step(tmp_path):
    """Rank 0 sees a NaN loss in step 1, rank 1 an inf in step 3: both ranks skip steps 1 and 3 (a rank that skipped
    a step alone would train other weights than the others from then on); a finite step logs the ranks' mean loss."""
    losses = {0: [float('nan'), 0.25, 0.5], 1: [0.5, 0.75, float('inf')]}
    ctx = mp.get_context('fork')
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_rank, args=(r, tmp_path / 'init', losses, results)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    steps = [(None, False), (0.5, True), (None, False)]
    assert dict(results.get() for _ in procs) == {0: steps, 1: steps}


def _draws():
    import random

    import numpy as np
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))])
def test_rng_states_restore_from_a_checkpoint_loaded_onto_the_device(device):
    """BasicSR loads a training state with every tensor mapped onto the GPU; the RNGs still restore from it."""
    state = checkpoint_io.get_rng_state()
    expected = _draws()
    on_device = {k: [v.to(device) if torch.is_tensor(v) else v for v in vs] if isinstance(vs, list) else vs.to(device)
                 for k, vs in state.items()}
    checkpoint_io.set_rng_state(on_device)
    assert _draws() == expected
