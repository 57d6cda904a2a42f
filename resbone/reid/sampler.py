"""The P x K identity sampler: batches of P identities with K images each, for the batch-hard triplet loss.

Anchors: reid-strong-baseline's / torchreid's `RandomIdentitySampler` and fast-reid's `NaiveIdentitySampler`
(identities with fewer than K images are sampled with replacement), sharded over processes as
torch's `DistributedSampler` does: every rank shuffles the identities with the same seed (seed + epoch, set by
`set_epoch`) and takes every world_size-th group of P identities, so the ranks' batches are disjoint and
together visit every identity once per epoch (the order is padded from its start to fill the last groups).
Reference test: tests/reid/test_sampler.py (one process, two simulated ranks, two gloo processes).
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from resbone.models._checks import check_int
from resbone.utils.distributed import get_rank, get_world_size

__all__ = ["PKSampler"]

logger = logging.getLogger(__name__)


class PKSampler(Sampler[list[int]]):
    """A batch sampler (`DataLoader(dataset, batch_sampler=PKSampler(labels, p=16, k=4))`): each batch holds P
    distinct identities and K indices of each, P * K indices in all.

    `labels[i]` is the identity of dataset item i. rank / world_size default to the process group's
    (resbone.utils.distributed), so the same code runs alone or under torchrun."""

    def __init__(self, labels: Sequence[int], *, p: int, k: int, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None) -> None:
        self.p, self.k = check_int("p", p, 2), check_int("k", k, 2)  # a triplet needs a positive and a negative
        self.world_size = get_world_size() if world_size is None else check_int("world_size", world_size)
        self.rank = get_rank() if rank is None else check_int("rank", rank, 0, self.world_size - 1)
        self.seed, self.epoch = int(seed), 0
        by_identity: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_identity.setdefault(int(label), []).append(index)
        if len(by_identity) < self.p:
            raise ValueError(f"PKSampler needs at least p={self.p} identities, the labels have {len(by_identity)}")
        self.identities = sorted(by_identity)
        self.indices = [torch.tensor(by_identity[i]) for i in self.identities]
        few = [i for i in self.identities if len(by_identity[i]) < self.k]
        if few:  # said once, here: every epoch samples them the same way
            logger.warning("%d of %d identities have fewer than k=%d images (e.g. identity %s); their K images are "
                           "drawn with replacement", len(few), len(self.identities), self.k, few[0])

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (as DistributedSampler.set_epoch; every rank must pass the same value)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        groups = -(-len(self.identities) // self.p)
        return -(-groups // self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.identities), generator=generator)
        total = len(self) * self.world_size * self.p
        order = order.repeat(-(-total // len(order)))[:total]  # the padding repeats the first identities
        groups = order.view(-1, self.p)
        for group in groups[self.rank::self.world_size]:
            yield [index for identity in group.tolist() for index in self._draw(identity, generator)]

    def _draw(self, identity: int, generator: torch.Generator) -> list[int]:
        indices = self.indices[identity]
        if len(indices) >= self.k:
            chosen = torch.randperm(len(indices), generator=generator)[:self.k]
        else:
            chosen = torch.randint(len(indices), (self.k,), generator=generator)
        return indices[chosen].tolist()
