"""Fixtures for the data tests: a copy of the fixture images and an LMDB made from them."""
import shutil
import sys
from os import path as osp

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # data_helpers, also under --import-mode=importlib
from data_helpers import HR_DIR, HR_NAMES  # noqa: E402

from basicsr.utils.lmdb_util import make_lmdb_from_imgs  # noqa: E402


@pytest.fixture
def hr_dir(tmp_path):
    """A writable copy of the fixture HR folder."""
    dst = tmp_path / 'hr'
    shutil.copytree(HR_DIR, dst)
    return str(dst)


@pytest.fixture
def hr_lmdb(tmp_path):
    """The fixture images in an LMDB written by BasicSR's make_lmdb_from_imgs (keys = names)."""
    names = sorted(f'{n}.png' for n in HR_NAMES)
    path = str(tmp_path / 'hr.lmdb')
    make_lmdb_from_imgs(HR_DIR, path, names, [osp.splitext(n)[0] for n in names], map_size=1 << 26)
    return path
