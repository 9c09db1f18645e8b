"""Training data that continues exactly where a resumed run stopped.

BasicSR's ``EnlargedSampler`` restarts the interrupted epoch from its first batch on resume, and its workers
draw augmentations from streams seeded once per epoch, so a resumed run sees other data than an uninterrupted
one. ``ResumableSampler`` keeps BasicSR's per-epoch shuffle and skips the batches already trained in the resumed
epoch. A dataset that declares ``reads_sample_keys = True`` (ours) gets a ``SampleKey`` per item instead of a bare
index: the index plus a seed derived from (manual_seed, epoch, position) and the item's position in the epoch, so
it draws the item's random numbers from that seed and an item never depends on which worker loads it or on what
was loaded before. The key travels with the index, so it is right also in persistent workers, whose copy of the
dataset never sees a later ``set_epoch``. Every other dataset gets plain indices, as from BasicSR.
"""
import hashlib
import random
from typing import Callable, Iterator, NamedTuple, Union

import numpy as np
import torch

from basicsr.data.data_sampler import EnlargedSampler


class SampleKey(NamedTuple):
    """What ``ResumableSampler`` hands a dataset that reads sample keys, per item.

    Attributes:
        index (int): The dataset index.
        seed (int): Seed of the item's random draws (``seed_rngs``).
        epoch (int): The epoch.
        step (int): Position among this rank's samples of the epoch (``step // batch_size`` is the batch).
    """
    index: int
    seed: int
    epoch: int
    step: int


def seed_rngs(seed: int) -> None:
    """Seed ``random`` and ``np.random`` (the streams BasicSR's datasets and ours draw from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def item_seed(base_seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed that is a pure function of (base_seed, epoch, global position in the epoch)."""
    digest = hashlib.blake2b(f'{base_seed}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') >> 1


class ResumableSampler(EnlargedSampler):
    """BasicSR's EnlargedSampler + skipping the batches a resumed run already trained on + ``SampleKey`` items for
    datasets that read them (``reads_sample_keys``)."""

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.base_seed = 0
        self.skip = {}  # epoch -> number of samples to skip in that epoch

    def resume_from(self, epoch: int, current_iter: int, batch_size: int) -> None:
        """Skip the samples of the ``current_iter - epoch * iters_per_epoch`` batches already done in ``epoch``."""
        iters_per_epoch = max(1, self.num_samples // batch_size)
        self.skip = {epoch: max(0, current_iter - epoch * iters_per_epoch) * batch_size}

    def __iter__(self) -> Iterator[Union[int, SampleKey]]:
        indices = list(super().__iter__())
        start = self.skip.get(self.epoch, 0)
        keyed = getattr(self.dataset, 'reads_sample_keys', False)
        for k in range(start, len(indices)):
            if keyed:
                position = self.rank + k * self.num_replicas
                yield SampleKey(indices[k], item_seed(self.base_seed, self.epoch, position), self.epoch, k)
            else:
                yield indices[k]


def make_resumable(create: Callable) -> Callable:
    """BasicSR's ``create_train_val_dataloader`` whose train loader resumes exactly: the sampler seeded with
    ``manual_seed`` and told the resume point, and a private loader generator (so that creating the loader iterator
    each epoch does not consume the global torch RNG that Gumbel noise uses)."""

    def wrapped(opt, logger):
        train_loader, train_sampler, val_loaders, total_epochs, total_iters = create(opt, logger)
        if isinstance(train_sampler, ResumableSampler):
            seed = int(opt.get('manual_seed') or 0)
            train_sampler.base_seed = seed
            resume = opt.get('_resume_point')
            if resume:
                train_sampler.resume_from(resume['epoch'], resume['iter'], train_loader.batch_size)
            train_loader.generator = torch.Generator().manual_seed(seed)
        return train_loader, train_sampler, val_loaders, total_epochs, total_iters

    return wrapped
