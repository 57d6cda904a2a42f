"""Labelled images from a folder per class (torchvision's ImageFolder) or a CSV / list file, with errors a
user can act on: an empty class folder, an image that cannot be read (named), train and test sets whose
classes differ.

Anchor: torchvision.datasets.ImageFolder (class names = the sorted sub-folder names, label = their index,
IMG_EXTENSIONS); the file form holds `path,label` lines (a `path,label` header is allowed; `path label`
in a .txt), paths relative to the file's folder, class names = the sorted label names. With a `seed`, the
transform's random draws are a function of (seed, epoch, index) (resbone.engine.data.seeded_sample). Proven by
tests/classification/test_data.py and tests/classification/test_task.py (resume with loader workers).
"""
from __future__ import annotations

import csv
import os
from typing import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from resbone.engine.data import seeded_sample

__all__ = ["LabelledImages", "check_same_classes", "open_labelled_images"]


class LabelledImages(torch.utils.data.Dataset):
    """(image, label) pairs; `samples` [(path, label)], `classes` (class names), `transform` applied to the
    RGB PIL image. An unreadable image raises a ValueError naming its path. With `seed` (an int), the transform
    of sample i in epoch e (`set_epoch`) draws its randomness from (seed, e, i) alone."""

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str], *, source: str,
                 transform: Callable | None = None, seed: int | None = None) -> None:
        self.samples, self.classes, self.source, self.transform = list(samples), list(classes), source, transform
        self.targets = [label for _, label in self.samples]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def class_names(self) -> list[str]:
        return self.classes

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        path = self.samples[index][0]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise ValueError(f"image {path} of {self.source} cannot be read ({type(error).__name__}: {error}); "
                             "replace or remove it") from None

    def __getitem__(self, index: int):
        image = self.load(index)
        if self.transform is not None and self.seed is not None:
            with seeded_sample(self.seed, self.epoch, index):
                image = self.transform(image)
        elif self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index][1]


def open_labelled_images(source: str, *, what: str, transform: Callable | None = None,
                         seed: int | None = None) -> LabelledImages:
    """The set at `source`: an ImageFolder root, or a .csv / .txt file of `path,label` lines. `what` names the
    config key in errors (e.g. DATASETS.TRAIN); `seed`: see LabelledImages."""
    if not source:
        raise ValueError(f"{what} is empty; give an image folder (one sub-folder per class) or a .csv file of "
                         "`path,label` lines")
    if not os.path.exists(source):
        raise ValueError(f"{what} {source} does not exist; give an image folder or a .csv / .txt file")
    read = _from_folder if os.path.isdir(source) else _from_file
    images = read(source, what=what, transform=transform)
    images.seed = seed
    return images


def _from_folder(root: str, *, what: str, transform: Callable | None) -> LabelledImages:
    try:
        classes, class_to_idx = find_classes(root)
    except FileNotFoundError:
        raise ValueError(f"{what} {root} has no class sub-folder; put each class's images in a folder of "
                         "its own (root/<class>/<image>)") from None
    samples = make_dataset(root, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = {name: 0 for name in classes}
    for _, label in samples:
        counts[classes[label]] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f"{what} {root}: the class folder(s) {', '.join(empty)} hold no image (extensions "
                         f"{', '.join(IMG_EXTENSIONS)}); add images or remove the folder")
    return LabelledImages(samples, classes, source=root, transform=transform)


def _from_file(path: str, *, what: str, transform: Callable | None) -> LabelledImages:
    folder = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as handle:
        lines = csv.reader(handle) if path.endswith(".csv") else (line.split() for line in handle)
        for number, row in enumerate(lines, 1):
            if not row or (number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            if len(row) != 2:
                raise ValueError(f"{what} {path} line {number}: expected `path,label`, got {row}")
            image, label = row[0].strip(), row[1].strip()
            image = image if os.path.isabs(image) else os.path.join(folder, image)
            if not os.path.isfile(image):
                raise ValueError(f"{what} {path} line {number}: image {image} does not exist")
            rows.append((image, label))
    if not rows:
        raise ValueError(f"{what} {path} lists no image; write one `path,label` line per image")
    classes = sorted({label for _, label in rows})
    index = {name: i for i, name in enumerate(classes)}
    return LabelledImages([(image, index[label]) for image, label in rows], classes, source=path,
                          transform=transform)


def check_same_classes(train: LabelledImages, test: LabelledImages) -> None:
    """A test set must have the training set's classes (the same names: labels are their indices)."""
    if train.classes == test.classes:
        return
    only_train = sorted(set(train.classes) - set(test.classes))
    only_test = sorted(set(test.classes) - set(train.classes))
    raise ValueError(f"the classes of {test.source} differ from those of the training set {train.source}: "
                     f"only in training {only_train or 'none'}, only in {test.source} {only_test or 'none'}; "
                     "both sets need the same class folders (or labels)")
