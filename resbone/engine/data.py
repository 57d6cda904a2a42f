"""The batches of a run, for every task: endless training batches, this rank's share of a test set.

Anchor: FCOS `data/build.py` (`make_data_loader`: IMS_PER_BATCH split over processes, an iteration-based
sampler that resumes at `start_iter`) over torch's DistributedSampler. Each task brings its data set and
its collate function; `seeded_sample` makes a sample's random augmentations a function of (seed, epoch,
index), whichever process draws them. Proven by tests/engine/test_trainer.py (resume sees the same batches),
tests/engine/test_distributed.py and tests/classification/test_task.py (resume with loader workers).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from resbone.engine import distributed as comm

__all__ = ["build_train_batches", "build_test_loader", "per_rank", "seeded_sample"]


@contextlib.contextmanager
def seeded_sample(seed: int, epoch: int, index: int) -> Iterator[None]:
    """torch's CPU RNG seeded from (seed, epoch, index) inside the block, restored after it. A loader worker's
    RNG depends on which batches that worker drew before (a run resumed mid-epoch starts its workers afresh),
    and torchvision.transforms.v2 draw from torch's global RNG; seeded per sample, the augmentations are the
    same with any DATALOADER.NUM_WORKERS, resumed or not, and the caller's RNG does not move."""
    with torch.random.fork_rng(devices=[]):
        # hash of a tuple of ints: the same in every process (PYTHONHASHSEED salts only str and bytes)
        # the CPU generator alone: torch.manual_seed also seeds every accelerator backend, ~70x slower
        torch.default_generator.manual_seed(hash((seed, epoch, index)) & 0x7FFFFFFF)
        yield


def build_train_batches(dataset, *, batch_size: int, seed: int, collate_fn: Callable, start_iter: int = 0,
                        num_workers: int = 0, batch_sampler=None) -> Iterator:
    """Endless batches for this rank. Epoch e uses DistributedSampler's permutation (seed + e), so
    the union of the ranks' batches at an iteration is the one-process batch of the global size, and
    a resumed run sees the same batches as an uninterrupted one. A data set with `set_epoch(e)` hears of
    each epoch (seeded augmentations). A task's own `batch_sampler` (lists of this rank's indices, with
    `set_epoch` and `__len__`, e.g. re-id's P x K identities) replaces the shuffled batches of `batch_size`."""
    world, rank = comm.get_world_size(), comm.get_rank()
    if batch_sampler is None:
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                      seed=seed, drop_last=False)
        batch_sampler = _ShuffledBatches(sampler, batch_size)
    per_epoch = len(batch_sampler)
    if per_epoch == 0:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than SOLVER.IMS_PER_BATCH "
                         f"({batch_size * world}); lower IMS_PER_BATCH or add images")
    epoch, skip = divmod(start_iter, per_epoch)
    while True:
        batch_sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        batches = list(batch_sampler)[skip:]
        # the loader's worker seeds come from their own generator, not the process's RNG: a loader made at a
        # resumed run's start then leaves that RNG (which random augmentations draw from) where the
        # uninterrupted run had it
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn,
                                             num_workers=num_workers,
                                             generator=torch.Generator().manual_seed(seed + epoch))
        yield from loader
        epoch, skip = epoch + 1, 0


class _ShuffledBatches:
    """DistributedSampler's indices in batches of `batch_size` (the last partial batch dropped)."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        return iter(torch.utils.data.BatchSampler(self.sampler, self.batch_size, drop_last=True))


def build_test_loader(dataset, *, batch_size: int, collate_fn: Callable, num_workers: int = 0):
    """This rank's share of the test set (indices rank::world, no padding, no duplicates)."""
    indices = list(range(comm.get_rank(), len(dataset), comm.get_world_size()))
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                       shuffle=False, collate_fn=collate_fn, num_workers=num_workers)


def per_rank(total: int, what: str) -> int:
    """A global batch (IMS_PER_BATCH) split evenly over the processes."""
    world = comm.get_world_size()
    if total % world:
        raise ValueError(f"{what} ({total}) must be divisible by the number of processes ({world})")
    return total // world
