"""ArbitraryScaleImageDataset: item contract, geometry of coord/cell, LR = resize of the crop, seeds, LMDB, errors."""
import copy
import random
from functools import partial

import cv2
import numpy as np
import pytest
import torch
from data_helpers import build
from torch.utils.data import DataLoader

from basicsr.data import worker_init_fn
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import make_coord
from gaussiansr_plugin.data.resize import imresize_to, quantize_uint8
from gaussiansr_plugin.data.scale_sampler import scale_of_batch

LQ = 16


def train_opt(root, **kw):
    opt = dict(
        type='ArbitraryScaleImageDataset',
        dataroot_gt=root,
        io_backend={'type': 'disk'},
        lq_size=LQ,
        scale_min=1,
        scale_max=4,
        sample_q=LQ * LQ,
        use_hflip=True,
        use_rot=True)
    opt.update(kw)
    return opt


def crop_of(item):
    """The HR crop [S, S, 3] (RGB) from an item built with sample_q: ~ (all pixels in raster order)."""
    side = int(round(item['scale'].item() * LQ))
    return item['gt_q'].reshape(side, side, 3).numpy()


def test_registered():
    assert 'ArbitraryScaleImageDataset' in DATASET_REGISTRY


def test_item_contract(hr_dir):
    ds = build(**train_opt(hr_dir))
    assert len(ds) == 3
    random.seed(0)
    for i in range(12):
        item = ds[i % 3]
        assert set(item) == {'lq', 'coord', 'cell', 'gt_q', 'scale', 'gt_path'}
        assert item['lq'].shape == (3, LQ, LQ) and item['lq'].dtype == torch.float32
        assert item['coord'].shape == item['cell'].shape == (LQ * LQ, 2)
        assert item['gt_q'].shape == (LQ * LQ, 3)
        assert item['scale'].shape == () and item['scale'].dtype == torch.float32
        for key in ('lq', 'gt_q'):
            assert 0 <= item[key].min() and item[key].max() <= 1
        assert item['coord'].abs().max() < 1
        side = item['scale'].item() * LQ
        assert abs(side - round(side)) < 1e-4  # effective scale = crop side / lq_size
        torch.testing.assert_close(item['cell'], torch.full_like(item['cell'], 2 / round(side)))
        assert item['gt_path'].endswith('.png')


def test_scale_range_respected(hr_dir):
    ds = build(**train_opt(hr_dir, scale_min=1.5, scale_max=2.5))
    random.seed(1)
    scales = [ds[i % 3]['scale'].item() for i in range(60)]
    lo, hi = round(LQ * 1.5) / LQ, round(LQ * 2.5) / LQ
    assert all(lo <= s <= hi for s in scales)
    assert max(scales) - min(scales) > 0.5  # actually spread over the range


def test_all_pixels_rebuild_the_crop_and_lq_is_its_resize(hr_dir):
    ds = build(**train_opt(hr_dir, sample_q=None))
    random.seed(3)
    for i in range(6):
        item = ds[i % 3]
        crop = crop_of(item)
        side = crop.shape[0]
        torch.testing.assert_close(item['coord'], make_coord((side, side)))
        expected = quantize_uint8(imresize_to(crop, (LQ, LQ)))
        np.testing.assert_allclose(item['lq'].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_integer_scale_matches_basicsr_imresize(hr_dir):
    ds = build(**train_opt(hr_dir, sample_q=None, scale_min=3, scale_max=3))
    random.seed(4)
    item = ds[0]
    crop = crop_of(item)
    assert crop.shape == (3 * LQ, 3 * LQ, 3)
    reference = quantize_uint8(imresize(crop, 1 / 3))
    np.testing.assert_allclose(item['lq'].permute(1, 2, 0).numpy(), reference, atol=1.5 / 255)
    assert np.mean(np.abs(item['lq'].permute(1, 2, 0).numpy() - reference) > 1e-6) < 0.01  # rare 1-level ties


def test_crop_comes_from_the_image(hr_dir):
    ds = build(**train_opt(hr_dir, sample_q=None, use_hflip=False, use_rot=False))
    random.seed(5)
    item = ds[0]
    crop = crop_of(item)
    img = cv2.imread(item['gt_path'])[..., ::-1].astype(np.float32) / 255.
    side = crop.shape[0]
    hits = [(top, left) for top in range(img.shape[0] - side + 1) for left in range(img.shape[1] - side + 1)
            if np.array_equal(img[top:top + side, left:left + side], crop)]
    assert hits


def test_sampled_queries_match_the_crop(hr_dir):
    full = build(**train_opt(hr_dir, sample_q=None))
    part = build(**train_opt(hr_dir, sample_q=100))
    random.seed(6)
    item_full = full[1]
    random.seed(6)  # the query draw is the last random call, so both items share the crop
    item = part[1]
    crop = crop_of(item_full)
    side = crop.shape[0]
    rows = torch.round((item['coord'][:, 0] + 1) * side / 2 - 0.5).long()
    cols = torch.round((item['coord'][:, 1] + 1) * side / 2 - 0.5).long()
    assert len(set((rows * side + cols).tolist())) == 100  # without replacement
    np.testing.assert_array_equal(item['gt_q'].numpy(), crop[rows.numpy(), cols.numpy()])
    torch.testing.assert_close(item['lq'], item_full['lq'])


def test_reproducible_with_seed(hr_dir):
    ds = build(**train_opt(hr_dir))
    items = []
    for seed in (7, 7, 8):
        random.seed(seed)
        items.append(ds[2])
    for key in ('lq', 'coord', 'gt_q', 'scale'):
        torch.testing.assert_close(items[0][key], items[1][key])
    assert not torch.equal(items[0]['gt_q'], items[2]['gt_q'])


def test_lmdb_equals_disk_and_cache_equals_no_cache(hr_dir, hr_lmdb):
    disk = build(**train_opt(hr_dir))
    variants = [
        build(**train_opt(hr_lmdb, io_backend={'type': 'lmdb'})),
        build(**train_opt(hr_dir, cache=True)),
        build(**train_opt(hr_lmdb, io_backend={'type': 'lmdb'}, cache=True)),
    ]
    assert variants[0].paths == ['cat', 'cup', 'face']
    for ds in variants:
        for index in range(3):
            random.seed(index)
            a = disk[index]
            random.seed(index)
            b = ds[index]
            for key in ('lq', 'coord', 'cell', 'gt_q', 'scale'):
                torch.testing.assert_close(a[key], b[key])


def test_options_are_not_mutated(hr_lmdb):
    opt = train_opt(hr_lmdb, io_backend={'type': 'lmdb'})
    before = copy.deepcopy(opt)
    ds = DATASET_REGISTRY.get('ArbitraryScaleImageDataset')(opt)
    random.seed(0)
    ds[0]
    assert opt == before


def test_meta_info_file(hr_dir, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('cup.png (120,100,3)\nface.png (90,110,3)\n')
    ds = build(**train_opt(hr_dir, meta_info_file=str(meta)))
    assert [p.rsplit('/', 1)[-1] for p in ds.paths] == ['cup.png', 'face.png']


def test_errors(hr_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        build(**train_opt(str(tmp_path / 'nowhere')))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images'):
        build(**train_opt(str(tmp_path / 'empty')))
    (tmp_path / 'x.lmdb').mkdir()
    with pytest.raises(FileNotFoundError, match='meta_info.txt'):
        build(**train_opt(str(tmp_path / 'x.lmdb'), io_backend={'type': 'lmdb'}))
    with pytest.raises(ValueError, match='.lmdb'):
        build(**train_opt(hr_dir, io_backend={'type': 'lmdb'}))
    with pytest.raises(ValueError, match='scale_min'):
        build(**train_opt(hr_dir, scale_min=3, scale_max=2))
    with pytest.raises(ValueError, match='sample_q'):
        build(**train_opt(hr_dir, sample_q=LQ * LQ + 1))
    with pytest.raises(ValueError, match='scale_sampling'):
        build(**train_opt(hr_dir, scale_sampling='epoch'))
    with pytest.raises(ValueError, match="'disk' or 'lmdb'"):
        build(**train_opt(hr_dir, io_backend={'type': 'memcached'}))


def test_too_small_image_names_the_file(hr_dir):
    cv2.imwrite(f'{hr_dir}/tiny.png', np.zeros((40, 70, 3), np.uint8))
    ds = build(**train_opt(hr_dir, scale_min=2, scale_max=3))  # largest crop 48 > 40
    index = [p.endswith('tiny.png') for p in ds.paths].index(True)
    with pytest.raises(ValueError, match=r'tiny\.png is 40x70.*48x48'):
        ds[index]
    with pytest.raises(ValueError, match=r'tiny\.png'):
        build(**train_opt(hr_dir, scale_max=3, cache=True))


def test_unreadable_image_names_the_file(hr_dir):
    with open(f'{hr_dir}/broken.png', 'wb') as f:
        f.write(b'not a png')
    ds = build(**train_opt(hr_dir))
    with pytest.raises(ValueError, match=r'cannot decode.*broken\.png'):
        ds[ds.paths.index(f'{hr_dir}/broken.png')]


def _loader(ds, batch_size, num_workers, rank=0, seed=10):
    """A DataLoader as BasicSR's build_dataloader makes it for training (sampler-free variant, shuffled)."""
    init = partial(worker_init_fn, num_workers=num_workers, rank=rank, seed=seed) if num_workers else None
    gen = torch.Generator().manual_seed(seed + rank)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        drop_last=True,
        worker_init_fn=init,
        generator=gen)


def test_item_sampling_mixes_scales_within_a_batch(hr_dir):
    random.seed(0)
    batch = next(iter(_loader(build(**train_opt(hr_dir)), 3, 0)))
    assert batch['lq'].shape == (3, 3, LQ, LQ) and batch['scale'].shape == (3, )
    assert batch['coord'].shape == batch['cell'].shape == (3, LQ * LQ, 2)
    assert len(set(batch['scale'].tolist())) > 1


@pytest.mark.parametrize('num_workers', [0, 2])
def test_batch_sampling_one_scale_per_batch_same_on_every_rank(hr_dir, num_workers):
    opt = train_opt(hr_dir, scale_sampling='batch', scale_seed=5, sample_q=None, scale_min=1, scale_max=3)
    per_rank = []
    for rank in (0, 1):  # two "ranks": different worker seeds and shuffles, same per-batch scales
        ds = build(**opt)
        scales, crops = [], []
        for batch in _loader(ds, 1, num_workers, rank=rank):
            scales.append(batch['scale'][0].item())
            crops.append(batch['gt_q'].shape[1])
        for batch in _loader(build(**opt), 3, num_workers, rank=rank):
            assert len(set(batch['scale'].tolist())) == 1
            assert batch['gt_q'].shape[1] == round(batch['scale'][0].item() * LQ)**2  # all pixels, equal crops
        per_rank.append(scales)
    assert per_rank[0] == per_rank[1]
    expected = [round(LQ * scale_of_batch(b, 1, 3, seed=5)) / LQ for b in range(3)]
    assert per_rank[0] == pytest.approx(expected)
