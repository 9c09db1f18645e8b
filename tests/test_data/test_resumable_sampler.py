"""ResumableSampler: BasicSR's shuffle, resumed epochs skip what was trained, and SampleKey items (seed, epoch,
position) only for datasets that declare ``reads_sample_keys``."""
from gaussiansr_plugin.data.resumable_sampler import ResumableSampler, SampleKey, item_seed


class _Plain(list):
    """A dataset of BasicSR's kind: it reads plain indices."""


class _Keyed(list):
    reads_sample_keys = True


def _epoch(dataset, epoch, rank=0, replicas=2, seed=3, resume=None):
    sampler = ResumableSampler(dataset, replicas, rank, ratio=2)
    sampler.base_seed = seed
    if resume:
        sampler.resume_from(*resume)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_plain_datasets_get_plain_indices_and_keyed_ones_get_sample_keys():
    plain, keyed = _epoch(_Plain(range(10)), 4, rank=1), _epoch(_Keyed(range(10)), 4, rank=1)
    assert all(type(i) is int for i in plain) and all(isinstance(k, SampleKey) for k in keyed)
    assert [k.index for k in keyed] == plain and len(plain) == 10  # ratio 2 over 2 ranks
    assert [k.step for k in keyed] == list(range(10)) and {k.epoch for k in keyed} == {4}
    assert [k.seed for k in keyed] == [item_seed(3, 4, 1 + 2 * k) for k in range(10)]  # global position
    assert keyed != _epoch(_Keyed(range(10)), 5, rank=1)


def test_a_resumed_epoch_continues_with_the_same_keys():
    full = _epoch(_Keyed(range(10)), 2)
    # 2 batches of 2 per epoch (10 samples per rank // batch 2 = 5 iters per epoch): iter 12 is 2 batches into epoch 2
    assert _epoch(_Keyed(range(10)), 2, resume=(2, 12, 2)) == full[4:]
    assert _epoch(_Keyed(range(10)), 3, resume=(2, 12, 2)) == _epoch(_Keyed(range(10)), 3)  # later epochs whole
