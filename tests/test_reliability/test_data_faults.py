"""Data faults: corrupt / truncated PNGs, missing LMDB keys, corrupt LMDBs and too-small images give a DataError that
names the file or key, also through DataLoader workers; ``basicsr train`` reports them as one line (exit 2) and
never hangs; ``skip_bad_images`` skips and counts them instead."""
import os
import shutil
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest
import yaml
from torch.utils.data import DataLoader

from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from basicsr.utils.registry import DATASET_REGISTRY
from gaussiansr_plugin.errors import DataError, MissingImageError, first_line

ENV = dict(os.environ, PYTHONUNBUFFERED='1', GAUSSIANSR_SPLAT='reference')


def _train_opt(root, **extra):
    opt = dict(name='faults', type='ArbitraryScaleImageDataset', phase='train', dataroot_gt=str(root),
               io_backend={'type': 'disk'}, lq_size=16, scale_min=1, scale_max=4, sample_q=64)
    opt.update(extra)
    return opt


def _build(opt):
    return DATASET_REGISTRY.get(opt['type'])(opt)


def _png_bytes(shape=(80, 90, 3), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return cv2.imencode('.png', pixels)[1].tobytes()


@pytest.fixture
def train_dir(tmp_path, photo_dirs):
    """A writable copy of the 4 training photos (200x180)."""
    dst = tmp_path / 'train'
    shutil.copytree(photo_dirs / 'train', dst)
    return dst


def _bad_files():
    """name -> bytes of each kind of broken image."""
    good = _png_bytes()
    middle = len(good) // 2
    return {
        'corrupt.png': good[:middle] + bytes(range(200)) + good[middle + 200:],  # junk inside the image data
        'truncated.png': good[:middle],  # the first half of a valid PNG
        'empty.png': b'',
        'text.png': b'not an image\n',
    }


def _index(ds, name):
    return [os.path.basename(p['gt_path'] if isinstance(p, dict) else p) for p in ds.paths].index(name)


def test_corrupt_truncated_and_empty_pngs_name_the_file(train_dir):
    for name, data in _bad_files().items():
        (train_dir / name).write_bytes(data)
    ds = _build(_train_opt(train_dir))
    for name in _bad_files():
        reason = r'truncated PNG \(no IEND chunk\)' if name == 'truncated.png' else 'corrupt, truncated or not an image'
        with pytest.raises(DataError, match=rf'^cannot decode image .*{name}: {reason}$'):
            ds[_index(ds, name)]
    test_ds = _build(dict(name='val', type='ArbitraryScaleTestDataset', phase='val', dataroot_gt=str(train_dir),
                          io_backend={'type': 'disk'}, scale=2.5))
    with pytest.raises(DataError, match=r'truncated\.png'):
        test_ds[_index(test_ds, 'truncated.png')]


def test_too_small_image_and_missing_file_name_the_file(train_dir):
    cv2.imwrite(str(train_dir / 'small.png'), np.zeros((50, 300, 3), np.uint8))
    ds = _build(_train_opt(train_dir))  # the largest crop is 16 * 4 = 64 pixels
    with pytest.raises(DataError, match=r'small\.png is 50x300, smaller than the largest HR crop 64x64'):
        ds[_index(ds, 'small.png')]
    os.remove(train_dir / 'small.png')
    with pytest.raises(MissingImageError, match=r'image not found: .*small\.png'):
        ds[_index(ds, 'small.png')]
    assert issubclass(MissingImageError, FileNotFoundError) and issubclass(DataError, ValueError)


def test_workers_reraise_the_error_with_the_file_name(train_dir):
    """With 2 DataLoader workers the error reaches the main process (no hang) and ``first_line`` recovers it."""
    (train_dir / 'truncated.png').write_bytes(_bad_files()['truncated.png'])
    ds = _build(_train_opt(train_dir))
    loader = DataLoader(ds, batch_size=1, num_workers=2, sampler=[_index(ds, 'truncated.png')] * 4)
    with pytest.raises(DataError) as info:
        list(loader)
    assert 'DataLoader worker' in str(info.value)  # PyTorch's wrapped message, with the worker traceback
    assert first_line(info.value) == f'cannot decode image {train_dir / "truncated.png"}: truncated PNG (no IEND chunk)'


@pytest.fixture
def photo_lmdb(tmp_path, photo_dirs):
    """The 4 training photos in an LMDB written by BasicSR's make_lmdb_from_imgs."""
    names = sorted(os.listdir(photo_dirs / 'train'))
    path = str(tmp_path / 'train.lmdb')
    make_lmdb_from_imgs(str(photo_dirs / 'train'), path, names, [os.path.splitext(n)[0] for n in names],
                        map_size=1 << 26)
    return path


def test_missing_key_and_corrupt_entry_in_lmdb_name_the_key(photo_lmdb):
    with open(os.path.join(photo_lmdb, 'meta_info.txt'), 'a') as f:
        f.write('ghost.png (200,180,3) 1\n')  # listed, never written
    env = lmdb.open(photo_lmdb, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b'junk', b'\x89PNG\r\n\x1a\n' + b'\x00' * 100)
    env.close()
    with open(os.path.join(photo_lmdb, 'meta_info.txt'), 'a') as f:
        f.write('junk.png (200,180,3) 1\n')
    ds = _build(_train_opt(photo_lmdb, io_backend={'type': 'lmdb'}))
    with pytest.raises(MissingImageError, match=r"image not found: key 'ghost' of .*train\.lmdb"):
        ds[ds.paths.index('ghost')]
    with pytest.raises(DataError, match=r"cannot decode image key 'junk' of .*train\.lmdb"):
        ds[ds.paths.index('junk')]


def test_corrupt_lmdb_names_the_database(photo_lmdb):
    with open(os.path.join(photo_lmdb, 'data.mdb'), 'r+b') as f:
        f.write(os.urandom(8192))  # overwrite the meta pages
    ds = _build(_train_opt(photo_lmdb, io_backend={'type': 'lmdb'}))
    with pytest.raises(DataError, match=r'cannot open LMDB .*train\.lmdb: .*MDB_INVALID'):
        ds[0]


def test_skip_bad_images_skips_and_counts(train_dir, basicsr_log):
    for name, data in _bad_files().items():
        (train_dir / name).write_bytes(data)
    cv2.imwrite(str(train_dir / 'small.png'), np.zeros((50, 300, 3), np.uint8))
    ds = _build(_train_opt(train_dir, skip_bad_images=True))
    bad = set(_bad_files()) | {'small.png'}
    for _ in range(2):  # every bad file is logged once, however often it is drawn
        for index in range(len(ds)):
            assert os.path.basename(ds[index]['gt_path']) not in bad
    skipped = [m for m in basicsr_log.messages if m.startswith('skip_bad_images: skipped')]
    assert sorted(m.split(' ')[2].rsplit('/', 1)[-1] for m in skipped) == sorted(bad)
    assert '(5 skipped in this process so far)' in skipped[-1]

    cached = _build(_train_opt(train_dir, skip_bad_images=True, cache=True))
    assert len(cached) == 4 and not {os.path.basename(p) for p in cached.paths} & bad

    for name in os.listdir(train_dir):
        if name not in bad:
            os.remove(train_dir / name)
    with pytest.raises(DataError, match='none of the 5 images'):
        _build(_train_opt(train_dir, skip_bad_images=True))[0]


def _train_with_workers(tmp_path, photo_dirs, train_yml, dataroot, io_backend):
    yml = yaml.safe_load(train_yml(photo_dirs, name='faults', total_iter=12, val=None))
    yml['datasets']['train'].update(dataroot_gt=str(dataroot), io_backend=io_backend, num_worker_per_gpu=2,
                                    batch_size_per_gpu=2)
    yml['logger']['save_checkpoint_freq'] = 1000
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(yml))
    return subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.train', '-opt', 'train.yml'], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize('fault', ['truncated-png', 'missing-lmdb-key'])
def test_basicsr_train_with_two_workers_stops_with_one_line(tmp_path, photo_dirs, train_yml, fault):
    """One good and one bad image, batches of 2: both workers meet the bad item in their first batch, after training
    started; the run ends cleanly (no hang, no traceback) with exit status 2 and one line naming the file or key."""
    good = sorted(os.listdir(photo_dirs / 'train'))[0]
    if fault == 'truncated-png':
        root = tmp_path / 'train'
        root.mkdir()
        shutil.copy(photo_dirs / 'train' / good, root / good)
        (root / 'zz_cut.png').write_bytes(_bad_files()['truncated.png'])
        proc = _train_with_workers(tmp_path, photo_dirs, train_yml, root, {'type': 'disk'})
        expected = f'error: cannot decode image {root / "zz_cut.png"}: truncated PNG (no IEND chunk)'
    else:
        root = tmp_path / 'train.lmdb'
        make_lmdb_from_imgs(str(photo_dirs / 'train'), str(root), [good], [os.path.splitext(good)[0]],
                            map_size=1 << 26)
        with open(root / 'meta_info.txt', 'a') as f:
            f.write('ghost.png (200,180,3) 1\n')
        proc = _train_with_workers(tmp_path, photo_dirs, train_yml, root, {'type': 'lmdb'})
        expected = f"error: image not found: key 'ghost' of {root} (listed in meta_info.txt, absent from the LMDB)"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and 'libpng' not in proc.stderr
    assert lines[-1] == expected
    assert [line for line in lines if line.startswith('error:')] == lines[-1:]
    assert 'Start training' in proc.stderr  # it failed inside the training loop, not while setting up
