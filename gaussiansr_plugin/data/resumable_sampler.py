"""Training data that continues exactly where a resumed run stopped.

BasicSR's ``EnlargedSampler`` restarts the interrupted epoch from its first batch on resume, and its workers
draw augmentations from streams seeded once per epoch, so a resumed run sees other data than an uninterrupted
one. ``SeededEnlargedSampler`` keeps BasicSR's per-epoch shuffle, skips the batches already trained in the
resumed epoch, and tags every index with a seed derived from (manual_seed, epoch, position): datasets that
honour ``index.seed`` (ours do) draw the item's random numbers from it, so an item never depends on which
worker loads it or on what was loaded before.
"""
import hashlib
import random

import numpy as np
import torch

from basicsr.data.data_sampler import EnlargedSampler


class SeededIndex(int):
    """A dataset index (an ``int`` for every other dataset) that also carries the seed of its item's random draws,
    the epoch, and its position ``step`` among this rank's samples of the epoch (``step // batch`` is the batch)."""

    def __new__(cls, value: int, seed: int, epoch: int = 0, step: int = 0):
        obj = super().__new__(cls, value)
        obj.seed, obj.epoch, obj.step = seed, epoch, step
        return obj

    def __reduce__(self):
        return SeededIndex, (int(self), self.seed, self.epoch, self.step)


def seed_item_rngs(index: int) -> None:
    """Seed ``random`` and ``np.random`` from ``index.seed`` when the index carries one (no-op for a plain int)."""
    seed = getattr(index, 'seed', None)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)


def item_seed(base_seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed that is a pure function of (base_seed, epoch, global position in the epoch)."""
    digest = hashlib.blake2b(f'{base_seed}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') >> 1


class SeededEnlargedSampler(EnlargedSampler):
    """BasicSR's EnlargedSampler + per-item seeds + skipping the batches a resumed run already trained on."""

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.base_seed = 0
        self.skip = {}  # epoch -> number of samples to skip in that epoch

    def resume_from(self, epoch: int, current_iter: int, batch_size: int) -> None:
        """Skip the samples of the ``current_iter - epoch * iters_per_epoch`` batches already done in ``epoch``."""
        iters_per_epoch = max(1, self.num_samples // batch_size)
        self.skip = {epoch: max(0, current_iter - epoch * iters_per_epoch) * batch_size}

    def __iter__(self):
        indices = list(super().__iter__())
        start = self.skip.get(self.epoch, 0)
        for k in range(start, len(indices)):
            position = self.rank + k * self.num_replicas
            yield SeededIndex(indices[k], item_seed(self.base_seed, self.epoch, position), self.epoch, k)


def wrap_create_train_val_dataloader(create):
    """Make BasicSR's train loader resumable: seeded sampler, resume skip, and a private loader generator (so that
    creating the loader iterator each epoch does not consume the global torch RNG that Gumbel noise uses)."""

    def wrapped(opt, logger):
        train_loader, train_sampler, val_loaders, total_epochs, total_iters = create(opt, logger)
        if isinstance(train_sampler, SeededEnlargedSampler):
            seed = int(opt.get('manual_seed') or 0)
            train_sampler.base_seed = seed
            resume = opt.get('_resume_point')
            if resume:
                batch = train_loader.batch_size
                train_sampler.resume_from(resume['epoch'], resume['iter'], batch)
            train_loader.generator = torch.Generator().manual_seed(seed)
        return train_loader, train_sampler, val_loaders, total_epochs, total_iters

    return wrapped
