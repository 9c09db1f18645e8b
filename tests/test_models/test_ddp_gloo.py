"""DDP on CPUs: ``torchrun --nproc_per_node 2 -m gaussiansr_plugin.train --launcher pytorch`` (gloo) keeps the
ranks in sync, validates and saves once."""
import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch

# A plugin named in the yml's custom_imports: the model also saves each rank's weights at the end.
SYNC_PLUGIN = textwrap.dedent("""
    import os
    import torch
    import torch.distributed as dist
    from basicsr.utils.registry import MODEL_REGISTRY
    from gaussiansr_plugin.models.gaussiansr_model import GaussianSRModel


    @MODEL_REGISTRY.register()
    class RankWeightsModel(GaussianSRModel):

        def save(self, epoch, current_iter):
            super().save(epoch, current_iter)
            rank = dist.get_rank() if dist.is_initialized() else 0
            state = self.get_bare_model(self.net_g).state_dict()
            torch.save(state, os.path.join(self.opt['path']['experiments_root'], f'rank{rank}_{current_iter}.pth'))
""")


def _train(tmp_path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    """``train.yml`` in ``tmp_path`` trained by ``nproc`` processes (gloo when more than one); plugins written to
    ``tmp_path`` are importable."""
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
               GAUSSIANSR_SPLAT='reference', OMP_NUM_THREADS='1')
    launch = (['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), '-m',
               'gaussiansr_plugin.train', '--launcher', 'pytorch'] if nproc > 1 else ['-m', 'gaussiansr_plugin.train'])
    return subprocess.run([sys.executable, *launch, '-opt', 'train.yml', *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun with gloo on Linux')
def test_two_process_gloo_training_stays_in_sync(tmp_path, photo_dirs, train_yml):
    (tmp_path / 'rank_weights_plugin.py').write_text(SYNC_PLUGIN)
    yml = train_yml(photo_dirs, name='ddp', total_iter=6, model_type='RankWeightsModel',
                    custom_imports={'imports': ['rank_weights_plugin']},
                    logger={'print_freq': 2, 'save_checkpoint_freq': 6}, val={'val_freq': 6})
    (tmp_path / 'train.yml').write_text(yml)
    out = _train(tmp_path, 2)
    assert out.returncode == 0, out.stderr[-3000:]

    exp = tmp_path / 'experiments' / 'ddp'
    log = open(glob.glob(str(exp / 'train_ddp_*.log'))[0]).read()
    assert 'World size (gpu number): 2' in log and 'Validation photos_val_x2.5' in log
    assert sorted(os.listdir(exp / 'models')) == ['net_g_6.pth', 'net_g_latest.pth']  # saved once, by rank 0
    ranks = [torch.load(exp / f'rank{r}_6.pth', weights_only=True) for r in (0, 1)]
    for name in ranks[0]:
        torch.testing.assert_close(ranks[1][name], ranks[0][name], rtol=0, atol=0, msg=name)


@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun with gloo on Linux')
@pytest.mark.parametrize('first, then', [(2, 1), (1, 2)], ids=['2-to-1-process', '1-to-2-processes'])
def test_resume_across_world_sizes(tmp_path, photo_dirs, train_yml, first, then):
    """A run saved by 2 processes resumes in 1 and the other way round: iteration, weights and optimizer state
    carry over (the data order differs: the sampler shards by world size)."""
    def write(total_iter):
        (tmp_path / 'train.yml').write_text(train_yml(photo_dirs, name='ws', total_iter=total_iter,
                                                      logger={'print_freq': 2, 'save_checkpoint_freq': 2},
                                                      val={'val_freq': 100}))
    write(4)
    out = _train(tmp_path, first)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'ws'
    saved = torch.load(exp / 'models' / 'net_g_4.pth', weights_only=True)['params']
    write(6)
    out = _train(tmp_path, then, '--auto_resume')
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(sorted(glob.glob(str(exp / 'train_ws_*.log')))[-1]).read()
    assert f'World size (gpu number): {then}' in log and 'Resuming training from epoch' in log and 'iter: 4' in log
    assert 'net_g_4.pth' in log  # BasicSR's resume loads the saved weights (and the optimizer from 4.state)
    assert (exp / 'training_states' / '6.state').is_file()
    final = torch.load(exp / 'models' / 'net_g_6.pth', weights_only=True)['params']
    assert any(not torch.equal(final[k], saved[k]) for k in saved)  # trained on from the saved weights
