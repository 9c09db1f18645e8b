"""Listing and reading images for the datasets: a folder, a ``meta_info_file`` or a BasicSR LMDB.

Reading goes through BasicSR's ``FileClient`` (``disk`` or ``lmdb``); every error names the file or
LMDB key. The client is created lazily and re-created after a fork, so an LMDB environment opened in
the main process is never shared with DataLoader workers.
"""
import os
from os import path as osp
from typing import Dict, List, Optional

import numpy as np
from basicsr.utils import FileClient, imfrombytes, scandir

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


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
        self._client, self._pid = None, None

    def _get_client(self) -> FileClient:
        if self._client is None or self._pid != os.getpid():
            kwargs = {k: v for k, v in self.io_backend.items() if k != 'type'}
            if self.backend == 'lmdb':
                kwargs.update(db_paths=list(self.lmdb_roots.values()), client_keys=list(self.lmdb_roots.keys()))
            self._client, self._pid = FileClient(self.backend, **kwargs), os.getpid()
        return self._client

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_client'], state['_pid'] = None, None  # never pickle an open LMDB environment
        return state

    def read(self, path: str, client_key: str = 'gt') -> np.ndarray:
        """Read one image.

        Args:
            path (str): File path (disk) or LMDB key.
            client_key (str): Which LMDB (``gt`` / ``lq``); ignored on disk. Default: 'gt'.

        Returns:
            np.ndarray: [H, W, 3] uint8, BGR (gray images are expanded, alpha is dropped).
        """
        where = f'key {path!r} of {self.lmdb_roots.get(client_key)}' if self.backend == 'lmdb' else path
        try:
            content = self._get_client().get(path, client_key)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'image not found: {where}') from err
        if content is None:
            raise KeyError(f'image not found: {where}')
        img = imfrombytes(content, flag='color', float32=False)
        if img is None:
            raise ValueError(f'cannot decode image: {where}')
        return img
