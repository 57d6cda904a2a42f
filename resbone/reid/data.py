"""Re-id data sets on disk: Market-1501's and DukeMTMC-reID's folders and file names, as images and labels.

Anchors: torchreid's `data/datasets/image/market1501.py` and `dukemtmcreid.py` (folders bounding_box_train,
query, bounding_box_test; identity and camera from the file name; cameras counted from 0; training identities
relabelled 0..N-1 in sorted order; junk images, identity -1, dropped from the training set). The names:
Market-1501 `0002_c1s1_000451_03.jpg` (identity, camera 1-6, sequence, frame, box; `-1_...` junk, `0000_...`
distractors), DukeMTMC-reID `0001_c2_f0046182.jpg` (identity, camera 1-8, frame). Unlike torchreid, a .jpg
whose name does not follow the naming is an error that names it (it would otherwise be read as some person),
and so is a query identity with no gallery image from another camera. Junk and distractor images of the
gallery are kept: resbone.reid.metrics.evaluate_rank excludes the junk as the Market-1501 protocol does.
Reference test: tests/reid/test_data.py.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, NamedTuple, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from resbone.engine.data import seeded_sample
from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["NAMINGS", "SPLITS", "ReidImages", "ReidItem", "parse_name", "read_reid_folder", "reid_transforms"]

SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAMINGS = {
    "market1501": (re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$"), "0002_c1s1_000451_03.jpg"),
    "dukemtmc": (re.compile(r"^(\d{4})_c(\d)_f(\d{7})\.jpg$"), "0001_c2_f0046182.jpg"),
}


class ReidItem(NamedTuple):
    path: str
    pid: int  # the identity in the file name (-1 junk, 0 a Market-1501 distractor)
    camid: int  # the camera, counted from 0
    label: int  # the training class (pid relabelled 0..N-1); -1 outside the training split


def parse_name(name: str, naming: str = "market1501") -> tuple[int, int]:
    """(identity, camera counted from 0) of a file name in `naming` ('market1501' or 'dukemtmc')."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {tuple(NAMINGS)}, got {naming!r}")
    pattern, example = NAMINGS[naming]
    match = pattern.match(os.path.basename(name))
    if match is None or int(match.group(2)) == 0:
        raise ValueError(f"{name!r} does not follow {naming}'s file naming (identity_camera..., e.g. {example}; "
                         f"cameras count from 1)")
    return int(match.group(1)), int(match.group(2)) - 1


def _read_split(folder: str, naming: str) -> list[tuple[str, int, int]]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"re-id folder {folder} is missing; a {naming} set holds "
                                f"{', '.join(SPLITS.values())}")
    # other files (Market-1501 ships Thumbs.db) are not images of the set
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".jpg"))
    return [(os.path.join(folder, n), *parse_name(n, naming)) for n in names]


def read_reid_folder(root: str | os.PathLike, naming: str = "market1501") -> dict[str, list[ReidItem]]:
    """{'train': [...], 'query': [...], 'gallery': [...]} of ReidItem from `root`'s three folders."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {tuple(NAMINGS)}, got {naming!r}")
    root = os.fspath(root)
    splits = {split: _read_split(os.path.join(root, folder), naming) for split, folder in SPLITS.items()}
    train = [item for item in splits["train"] if item[1] != -1]
    if not train or not splits["query"] or not splits["gallery"]:
        empty = [SPLITS[s] for s, items in (("train", train), *((k, splits[k]) for k in ("query", "gallery")))
                 if not items]
        raise ValueError(f"{root}: no {naming} images in {', '.join(empty)}")
    relabel = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in train}))}
    gallery_cameras: dict[int, set[int]] = {}
    for _, pid, camid in splits["gallery"]:
        gallery_cameras.setdefault(pid, set()).add(camid)
    unmatched = sorted({pid for _, pid, camid in splits["query"] if not gallery_cameras.get(pid, set()) - {camid}})
    if unmatched:
        absent = [pid for pid in unmatched if pid not in gallery_cameras]
        raise ValueError(f"{root}: query identities {unmatched[:10]} have no gallery image from another camera "
                         f"({len(absent)} of them are absent from {SPLITS['gallery']}); a query cannot be scored "
                         f"without one")
    return {"train": [ReidItem(p, pid, c, relabel[pid]) for p, pid, c in train],
            "query": [ReidItem(p, pid, c, -1) for p, pid, c in splits["query"]],
            "gallery": [ReidItem(p, pid, c, -1) for p, pid, c in splits["gallery"]]}


def reid_transforms(size: Sequence[int] = (256, 128), *, train: bool, padding: int = 10, flip: float = 0.5,
                    erasing: float = 0.5) -> v2.Compose:
    """The baseline's pipeline: resize, (train: flip, pad + random crop), ImageNet normalisation, (train: random
    erasing). Erasing after normalising with value 0 fills with the mean pixel, as the baseline's RandomErasing."""
    steps: list[Any] = [v2.ToImage(), v2.Resize(tuple(size), antialias=True)]
    if train:
        steps += [v2.RandomHorizontalFlip(flip), v2.Pad(padding), v2.RandomCrop(tuple(size))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and erasing > 0:
        steps.append(v2.RandomErasing(erasing, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0))
    return v2.Compose(steps)


class ReidImages(Dataset):
    """`items` as (image tensor, label, pid, camid): label is the training class (-1 outside training). With
    `seed` (an int), the transform of item i in epoch e (`set_epoch`) draws its randomness from (seed, e, i)
    alone, so a resumed run sees the same augmentations with any number of loader workers."""

    def __init__(self, items: Sequence[ReidItem], transform: Callable | None = None, *,
                 seed: int | None = None) -> None:
        self.items = list(items)
        self.transform = transform or reid_transforms(train=False)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        item = self.items[index]
        with Image.open(item.path) as image:
            image = image.convert("RGB")
        if self.seed is None:
            tensor = self.transform(image)
        else:
            with seeded_sample(self.seed, self.epoch, index):
                tensor = self.transform(image)
        return tensor, item.label, item.pid, item.camid

    @property
    def labels(self) -> list[int]:
        return [item.label for item in self.items]

    @property
    def class_names(self) -> list[str]:
        """The training identities as 4-digit names, in label order (what a checkpoint records); [] outside
        the training split."""
        names = {item.label: f"{item.pid:04d}" for item in self.items if item.label >= 0}
        return [names[label] for label in sorted(names)]
