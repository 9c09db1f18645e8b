"""Listing and reading images for the datasets: a folder, a ``meta_info_file`` or a BasicSR LMDB.

Reading goes through BasicSR's ``FileClient`` (``disk`` or ``lmdb``); every error names the file or
LMDB key. LMDB clients are opened lazily, one per (process, database) and shared by every dataset of
that process (py-lmdb refuses to open one environment twice in a process, e.g. for a train and a val
dataset on the same LMDB), and re-opened after a fork, so DataLoader workers never reuse the parent's.
"""
import os
from os import path as osp
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from basicsr.utils import FileClient, imfrombytes, scandir

from ..errors import DataError, MissingImageError

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')
_LMDB_CLIENTS: Dict[Tuple[int, str], FileClient] = {}  # (pid, real path) -> client of that one database


def lmdb_client(root: str, **kwargs) -> FileClient:
    """The shared ``FileClient('lmdb')`` of this process for ``root`` (client key ``'default'``)."""
    key = (os.getpid(), osp.realpath(root))
    if key not in _LMDB_CLIENTS:
        _LMDB_CLIENTS[key] = FileClient('lmdb', db_paths=[root], client_keys=['default'], **kwargs)
    return _LMDB_CLIENTS[key]


def check_folder(root: Optional[str], option: str) -> str:
    """Return ``root`` if it is an existing folder, else raise an error naming the option."""
    if not root:
        raise ValueError(f'{option} is required (a folder of images or a .lmdb folder)')
    if not osp.isdir(root):
        raise FileNotFoundError(f'{option}: folder not found: {root}')
    return root


def lmdb_keys(root: str) -> List[str]:
    """Keys of a BasicSR LMDB, from its ``meta_info.txt`` (``name.png (h,w,c) level`` per line), sorted."""
    if not root.endswith('.lmdb'):
        raise ValueError(f'io_backend lmdb needs a folder ending in .lmdb, got {root}')
    meta = osp.join(root, 'meta_info.txt')
    if not osp.isfile(meta):
        raise FileNotFoundError(f'{meta} not found (make LMDBs with basicsr.utils.lmdb_util.make_lmdb_from_imgs)')
    with open(meta) as f:
        keys = [osp.splitext(line.split(' ')[0])[0] for line in f if line.strip()]
    if not keys:
        raise ValueError(f'{meta} lists no images')
    return sorted(keys)


def folder_images(root: str, meta_info_file: Optional[str] = None) -> List[str]:
    """Image paths under ``root`` (sorted), or the names listed in ``meta_info_file`` (first token per line)."""
    if meta_info_file:
        if not osp.isfile(meta_info_file):
            raise FileNotFoundError(f'meta_info_file not found: {meta_info_file}')
        with open(meta_info_file) as f:
            names = [line.strip().split(' ')[0] for line in f if line.strip()]
    else:
        names = sorted(v for v in scandir(root) if v.lower().endswith(IMG_EXTENSIONS))
    if not names:
        raise ValueError(f'no images ({", ".join(IMG_EXTENSIONS)}) found in {meta_info_file or root}')
    return [osp.join(root, name) for name in names]


def _truncated_png(content: bytes) -> bool:
    """A PNG signature without the closing IEND chunk (a file cut short by a failed copy or download)."""
    return content[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in content[-4096:] and b'IEND' not in content


class ImageReader:
    """Read images as uint8 BGR ``[H, W, 3]`` through BasicSR's ``FileClient``.

    Args:
        io_backend (dict): BasicSR ``io_backend`` option, ``{type: disk}`` or ``{type: lmdb}`` (+ kwargs).
        lmdb_roots (dict, optional): For lmdb, client key -> ``.lmdb`` folder, e.g. ``{'gt': ..., 'lq': ...}``.
    """

    def __init__(self, io_backend: dict, lmdb_roots: Optional[Dict[str, str]] = None) -> None:
        self.io_backend = dict(io_backend or {'type': 'disk'})
        self.backend = self.io_backend.get('type', 'disk')
        if self.backend not in ('disk', 'lmdb'):
            raise ValueError(f"io_backend type must be 'disk' or 'lmdb', got {self.backend!r}")
        self.lmdb_roots = dict(lmdb_roots or {})
        self._client: Optional[FileClient] = None  # disk only; LMDB clients are shared per process

    def _get_client(self, client_key: str) -> Tuple[FileClient, str]:
        kwargs = {k: v for k, v in self.io_backend.items() if k != 'type'}
        if self.backend == 'lmdb':
            if client_key not in self.lmdb_roots:
                raise KeyError(f'no LMDB for client key {client_key!r}')
            return lmdb_client(self.lmdb_roots[client_key], **kwargs), 'default'
        if self._client is None:
            self._client = FileClient('disk', **kwargs)
        return self._client, client_key

    def read(self, path: str, client_key: str = 'gt') -> np.ndarray:
        """Read one image.

        Args:
            path (str): File path (disk) or LMDB key.
            client_key (str): Which LMDB (``gt`` / ``lq``); ignored on disk. Default: 'gt'.

        Returns:
            np.ndarray: [H, W, 3] uint8, BGR (gray images are expanded, alpha is dropped).

        Raises:
            MissingImageError: No such file or LMDB key.
            DataError: The file cannot be read or decoded (corrupt, truncated, not an image), or the LMDB cannot
                be opened.
        """
        where = f'key {path!r} of {self.lmdb_roots.get(client_key)}' if self.backend == 'lmdb' else path
        try:
            client, key = self._get_client(client_key)
            content = client.get(path, key)
        except FileNotFoundError as err:
            raise MissingImageError(f'image not found: {where}') from err
        except OSError as err:
            raise DataError(f'cannot read image {where}: {err.strerror or err}') from err
        except Exception as err:
            if not type(err).__module__.startswith('lmdb'):
                raise
            raise DataError(f'cannot open LMDB {self.lmdb_roots.get(client_key)}: {err}') from err
        if content is None:
            raise MissingImageError(f'image not found: {where} (listed in meta_info.txt, absent from the LMDB)')
        if _truncated_png(content):  # caught here: libpng would also print its own message on stderr
            raise DataError(f'cannot decode image {where}: truncated PNG (no IEND chunk)')
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we report failures ourselves
        img = imfrombytes(content, flag='color', float32=False) if len(content) else None
        if img is None:
            raise DataError(f'cannot decode image {where}: corrupt, truncated or not an image')
        return img
