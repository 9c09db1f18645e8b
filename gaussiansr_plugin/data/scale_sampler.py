"""Scale sampling for arbitrary-scale training: one scale per item, or one per batch shared by every rank."""
import random
from typing import Optional, Union

from torch.utils.data import get_worker_info


class BatchScaleSchedule:
    """One training scale per batch, identical on every DDP rank, without touching BasicSR's loader.

    BasicSR's ``build_dataloader`` makes a plain ``DataLoader`` (batch sampler, ``drop_last=True``). Its
    fetcher hands a whole batch of indices to ``dataset.__getitems__``, so the dataset sees each batch at
    once and can give all its items one scale. Batches go round-robin to the workers (``in_order=True``),
    so the ``j``-th batch that worker ``w`` of ``N`` builds is batch ``b = w + j * N`` of the iterator, on
    every rank alike. The scale of batch ``b`` is ``random.Random(f'...-{seed}-{b}').uniform(lo, hi)``: a
    pure function of ``(seed, b)``, not of the rank-dependent worker seeds, so all ranks train the same
    iteration at the same scale. ``b`` restarts when the workers restart (every epoch unless
    ``persistent_workers: true``), so the sequence of batch scales then repeats per epoch (still uniform).

    Args:
        scale_min (float): Lower bound of the uniform scale.
        scale_max (float): Upper bound of the uniform scale.
        seed (int): Seed of the per-batch stream (not rank dependent). Default: 0.
    """

    def __init__(self, scale_min: float, scale_max: float, seed: int = 0) -> None:
        self.scale_min, self.scale_max, self.seed = float(scale_min), float(scale_max), int(seed)
        self._calls = 0  # batches built by this process (each worker has its own copy)

    def batch_index(self) -> int:
        """The index ``b`` of the next batch this process builds (and advance the counter)."""
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index = worker_id + self._calls * num_workers
        self._calls += 1
        return index

    def next_scale(self) -> float:
        """The scale shared by all items of the next batch."""
        return scale_of_batch(self.batch_index(), self.scale_min, self.scale_max, self.seed)


def scale_of_batch(batch: Union[int, str], scale_min: float, scale_max: float, seed: int = 0) -> float:
    """The scale of batch ``batch`` under ``scale_sampling: batch`` (string seeding: stable across processes)."""
    return random.Random(f'gaussiansr-batch-scale-{seed}-{batch}').uniform(scale_min, scale_max)


def draw_scale(scale_min: float, scale_max: float, rng: Optional[random.Random] = None) -> float:
    """One scale ``s ~ U(scale_min, scale_max)`` from ``rng`` or the global ``random`` (worker-seeded)."""
    return (rng or random).uniform(scale_min, scale_max)
