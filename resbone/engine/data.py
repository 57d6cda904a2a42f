"""The training and test data of a run: DATASETS.TRAIN / TEST as data sets, endless training batches,
this rank's share of a test set.

Anchor: FCOS `data/build.py` (`make_data_loader`: concatenated training sets, IMS_PER_BATCH split over
processes, an iteration-based sampler that resumes at `start_iter`) over torch's DistributedSampler.
Proven by tests/engine/test_trainer.py (resume sees the same batches) and tests/engine/test_distributed.py.
"""
from __future__ import annotations

from typing import Iterator

import torch

from resbone.detection.data import COCODetection, collate, resolve_dataset
from resbone.engine import distributed as comm

__all__ = ["build_dataset", "build_train_batches", "build_test_loader", "per_rank", "shapes_settings"]


def build_dataset(cfg, names, *, is_train: bool) -> COCODetection:
    """The data sets named in DATASETS.TRAIN / TEST (several training sets are concatenated)."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"DATASETS.{'TRAIN' if is_train else 'TEST'} is empty; name a data set, "
                         "e.g. DATASETS.TRAIN \"('shapes_train',)\"")
    shapes = shapes_settings(cfg)
    # rank 0 generates the shapes set (if needed) while the others wait
    if comm.is_main_process():
        paths = [resolve_dataset(n, root=cfg.DATASETS.ROOT, shapes=shapes) for n in names]
    comm.barrier()
    if not comm.is_main_process():
        paths = [resolve_dataset(n, root=cfg.DATASETS.ROOT, shapes=shapes) for n in names]
    flip = cfg.INPUT.HORIZONTAL_FLIP_PROB_TRAIN if is_train else 0.0
    sets = [COCODetection(ann, image_dir, remove_images_without_annotations=is_train, flip_prob=flip,
                          seed=cfg.SEED) for image_dir, ann in paths]
    if len(sets) == 1:
        return sets[0]
    return _ConcatDetection(sets)


def shapes_settings(cfg) -> dict:
    """DATASETS.SHAPES as resolve_dataset's `shapes` argument."""
    return dict(num_train=cfg.DATASETS.SHAPES.NUM_TRAIN, num_val=cfg.DATASETS.SHAPES.NUM_VAL,
                image_size=cfg.DATASETS.SHAPES.IMAGE_SIZE, seed=cfg.DATASETS.SHAPES.SEED)


class _ConcatDetection(torch.utils.data.ConcatDataset):
    """Several training sets; labels are taken as they are (the sets must share their categories)."""

    def __init__(self, sets):
        names = [s.class_names for s in sets]
        if any(n != names[0] for n in names):
            raise ValueError(f"DATASETS.TRAIN mixes sets with different categories: {names}")
        super().__init__(sets)
        self.class_names = names[0]

    def set_epoch(self, epoch: int) -> None:
        for s in self.datasets:
            s.set_epoch(epoch)


def build_train_batches(dataset, *, batch_size: int, seed: int, start_iter: int = 0,
                        num_workers: int = 0) -> Iterator[tuple[list, list]]:
    """Endless batches for this rank. Epoch e uses DistributedSampler's permutation (seed + e), so
    the union of the ranks' batches at an iteration is the one-process batch of the global size, and
    a resumed run sees the same batches as an uninterrupted one."""
    world, rank = comm.get_world_size(), comm.get_rank()
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=seed, drop_last=False)
    per_epoch = len(sampler) // batch_size
    if per_epoch == 0:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than SOLVER.IMS_PER_BATCH "
                         f"({batch_size * world}); lower IMS_PER_BATCH or add images")
    epoch, skip = divmod(start_iter, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        batches = list(torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True))[skip:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=num_workers)
        yield from loader
        epoch, skip = epoch + 1, 0


def build_test_loader(dataset, *, batch_size: int, num_workers: int = 0):
    """This rank's share of the test set (indices rank::world, no padding, no duplicates)."""
    indices = list(range(comm.get_rank(), len(dataset), comm.get_world_size()))
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                       shuffle=False, collate_fn=collate, num_workers=num_workers)


def per_rank(total: int, what: str) -> int:
    """A global batch (IMS_PER_BATCH) split evenly over the processes."""
    world = comm.get_world_size()
    if total % world:
        raise ValueError(f"{what} ({total}) must be divisible by the number of processes ({world})")
    return total // world
