"""DATASETS.TRAIN / TEST of a detection config as data sets (the shapes set generated on first use).

Anchor: FCOS `data/build.py` (`build_dataset`: the named sets, several training sets concatenated).
Proven by tests/engine/test_trainer.py and tests/detection/test_predictor.py.
"""
from __future__ import annotations

import torch

from resbone.detection.data.dataset import COCODetection, resolve_dataset
from resbone.engine import distributed as comm

__all__ = ["build_dataset", "shapes_settings"]


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
