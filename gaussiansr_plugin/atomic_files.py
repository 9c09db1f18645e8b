"""Atomic file writes shared by image outputs and checkpoints.

A file is written to a hidden temporary file in its own folder (``.<name>.<pid>.<random>.tmp``), fsynced, then
renamed over the target, so a kill never leaves a partial file under the final name. A process killed with
``kill -9`` cannot remove its temporary file; the next process that writes to the same folder removes the temporary
files of processes that no longer run (once per folder). Files are created with mode 0666 minus the umask, like
``open()``.
"""
import contextlib
import os
import re
import secrets
from os import path as osp
from typing import BinaryIO, Callable, Set

_TEMP = re.compile(r'\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp')
_CLEANED: Set[str] = set()  # folders already rid of stale temporary files by this process


def temp_path_for(path: str) -> str:
    """A fresh temporary name beside ``path``, carrying this process's id."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temps(folder: str) -> int:
    """Remove temporary files in ``folder`` left by writers that no longer run; returns how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            found = _TEMP.fullmatch(entry.name)
            if found and entry.is_file(follow_symlinks=False) and not _running(int(found.group('pid'))):
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
                    removed += 1
    return removed


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it over ``path``.

    The folder is created if needed. On any failure (including Ctrl-C) the temporary file is removed, ``path`` is
    left as it was and the exception propagates.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if folder not in _CLEANED:  # once per folder and process: a batch of many files scans its folders once
        remove_stale_temps(folder)
        _CLEANED.add(folder)
    tmp = temp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
