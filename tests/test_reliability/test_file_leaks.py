"""Temporary files of killed writers are cleaned up, written files respect the umask, a full disk is one line."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gaussiansr_plugin.atomic_files import temp_path_for
from gaussiansr_plugin.cli import basicsr_cli
from gaussiansr_plugin.inference.image_io import Picture, write_image
from gaussiansr_plugin.errors import CheckpointWriteError
from gaussiansr_plugin.models.checkpoint_io import atomic_torch_save


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    return child.pid


def _picture() -> Picture:
    return Picture(rgb=np.zeros((2, 2, 3), np.float32), alpha=None, gray=False, dtype='uint8')


@pytest.mark.parametrize('kind', ['image', 'checkpoint'])
def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path, kind):
    target = tmp_path / ('out.png' if kind == 'image' else 'net_g_5.pth')
    stale = tmp_path / f'.{target.name}.{_dead_pid()}.0123abcd.tmp'  # as `kill -9` during a write leaves it
    alive = tmp_path / f'.{target.name}.{os.getpid()}.89abcdef.tmp'  # a write in progress: kept
    stale.write_bytes(b'partial')
    alive.write_bytes(b'partial')
    if kind == 'image':
        write_image(str(target), _picture())
    else:
        atomic_torch_save({'params': {}}, str(target))
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, alive.name])


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_and_checkpoints_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_torch_save({'params': {}}, str(tmp_path / 'net_g_1.pth'))
        write_image(str(tmp_path / 'out.png'), _picture())
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {'net_g_1.pth': mode, 'out.png': mode}


def test_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    target = tmp_path / 'net_g_5.pth'
    atomic_torch_save({'params': {'w': torch.ones(2)}}, str(target))

    def full_disk(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full_disk)
    with pytest.raises(CheckpointWriteError, match='net_g_5.pth: No space left on device; the earlier'):
        atomic_torch_save({'params': {'w': torch.zeros(2)}}, str(target))
    assert os.listdir(tmp_path) == ['net_g_5.pth'] and torch.load(target)['params']['w'].sum() == 2

    def run(command, argv):  # what `basicsr train` meets when BasicSR saves a checkpoint on a full disk
        atomic_torch_save({}, str(target))

    monkeypatch.setattr(basicsr_cli, 'run', run)
    with pytest.raises(SystemExit) as exit_info:
        basicsr_cli.main(['train', '-opt', 'x.yml'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith('error: cannot write ') and err.count('\n') == 1


def test_temp_names_carry_the_writer_pid(tmp_path):
    name = os.path.basename(temp_path_for(str(tmp_path / 'a.png')))
    assert name.startswith(f'.a.png.{os.getpid()}.') and name.endswith('.tmp')
