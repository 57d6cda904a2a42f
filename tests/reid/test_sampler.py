"""PKSampler's batches: P distinct identities with K images each, every identity visited once per epoch,
identities with fewer than K images drawn with replacement (said once); under two ranks (simulated, and two
real gloo processes as torchrun starts them) the ranks' identities are disjoint and together visit them all."""
from __future__ import annotations

import logging
import os
import socket
from collections import Counter

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from resbone.reid.sampler import PKSampler

# 10 identities (labels 100..109) with 2..7 images each, shuffled in the data set
LABELS = [100 + i for i in range(10) for _ in range(2 + i % 6)]
LABELS = [LABELS[i] for i in torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(0)).tolist()]


def _epoch_identities(batches: list[list[int]], k: int) -> list[int]:
    identities = []
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert all(count == k for count in counts.values()), counts  # K images of each identity
        identities += sorted(counts)
    return identities


def test_batches_hold_p_identities_with_k_images_and_visit_every_identity(caplog):
    with caplog.at_level(logging.WARNING, logger="resbone.reid.sampler"):
        sampler = PKSampler(LABELS, p=4, k=4, seed=1)
        batches = list(sampler) + list(sampler)
    assert len(batches) == 2 * len(sampler) == 2 * 3
    assert all(len(b) == 16 and len({LABELS[i] for i in b}) == 4 for b in batches)
    identities = _epoch_identities(batches[:3], 4)
    assert set(identities) == set(LABELS) and len(identities) == 12  # 10 identities, 2 padded from the start
    few = [r for r in caplog.records if "fewer than k=4" in r.getMessage()]
    assert len(few) == 1 and "4 of 10 identities" in few[0].getMessage()  # once, not once per epoch


def test_k_images_are_distinct_when_an_identity_has_enough():
    for batch in PKSampler(LABELS, p=2, k=2, seed=3):
        for identity in {LABELS[i] for i in batch}:
            chosen = [i for i in batch if LABELS[i] == identity]
            assert len(set(chosen)) == 2  # every identity has >= 2 images: no repeats


def test_epochs_reshuffle_and_the_seed_repeats():
    a, b = PKSampler(LABELS, p=2, k=2, seed=0), PKSampler(LABELS, p=2, k=2, seed=0)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def _ranks(world: int, epoch: int, **kwargs) -> list[list[list[int]]]:
    samplers = [PKSampler(LABELS, p=2, k=3, seed=7, rank=r, world_size=world, **kwargs) for r in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(s) for s in samplers]


@pytest.mark.parametrize("epoch", [0, 4])
def test_two_ranks_get_disjoint_identities_that_cover_every_identity(epoch):
    rank0, rank1 = _ranks(2, epoch)
    assert len(rank0) == len(rank1) == 3  # ceil(ceil(10 / 2) / 2): the ranks step together
    ids0, ids1 = _epoch_identities(rank0, 3), _epoch_identities(rank1, 3)
    assert set(ids0) | set(ids1) == set(LABELS)
    assert len(set(ids0) & set(ids1)) <= 2  # only the padding (12 slots for 10 identities) may repeat
    single = PKSampler(LABELS, p=2, k=3, seed=7)
    single.set_epoch(epoch)
    groups = [sorted({LABELS[i] for i in batch}) for batch in single]
    interleaved = [sorted({LABELS[i] for i in batch}) for pair in zip(rank0, rank1) for batch in pair]
    assert interleaved[:len(groups)] == groups  # the ranks' batches together are the one-process epoch


def test_works_as_a_dataloaders_batch_sampler():
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.tensor(LABELS))
    loader = DataLoader(dataset, batch_sampler=PKSampler(LABELS, p=3, k=2))
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert all(labels.tolist() == [LABELS[i] for i in index.tolist()] for index, labels in batches)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="p must be an int >= 2"):
        PKSampler(LABELS, p=1, k=4)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        PKSampler(LABELS, p=2, k=1)
    with pytest.raises(ValueError, match="at least p=11 identities, the labels have 10"):
        PKSampler(LABELS, p=11, k=2)
    with pytest.raises(ValueError, match=r"rank must be an int in 0..1"):
        PKSampler(LABELS, p=2, k=2, rank=2, world_size=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        sampler = PKSampler(LABELS, p=2, k=3, seed=7)  # rank and world size from the process group
        sampler.set_epoch(4)
        torch.save({"rank": sampler.rank, "batches": list(sampler)}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_shard_as_the_simulated_ranks(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [g["rank"] for g in got] == [0, 1]
    assert [g["batches"] for g in got] == _ranks(2, 4)
