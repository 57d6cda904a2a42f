"""COCO-json detection data for the FCOS detector: dataset, flip, collate, data-set catalog.

Anchor: maskrcnn-benchmark's `COCODataset` + `paths_catalog.DatasetCatalog` (FCOS inherits both):
annotations through pycocotools, crowd boxes ignored, images without boxes dropped for training,
COCO category ids mapped to contiguous labels 1..C. Unlike it, a sample is what the detector's calling
convention takes: a float RGB image in 0..1 [3,H,W] at its own size (the model resizes), and
dict(boxes xyxy, labels, image_id). Proven by tests/detection/test_data.py.
"""
from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import torch
from PIL import Image

__all__ = ["COCODetection", "collate", "data_root", "resolve_dataset", "register_dataset",
           "read_image"]


def read_image(path: str) -> torch.Tensor:
    """A float RGB tensor [3,H,W] in 0..1; a missing or unreadable file is a ValueError naming it."""
    if not os.path.isfile(path):
        raise ValueError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"image file {path} cannot be read as an image ({error})") from None
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


class COCODetection(torch.utils.data.Dataset):
    """Images and boxes of a COCO-format json (pycocotools); `flip_prob` > 0 flips left-right at random."""

    def __init__(self, ann_file: str, image_dir: str, *, remove_images_without_annotations: bool = False,
                 flip_prob: float = 0.0, seed: int = 0) -> None:
        from pycocotools.coco import COCO

        if not os.path.isfile(ann_file):
            raise ValueError(f"annotation file {ann_file} does not exist")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                self.coco = COCO(ann_file)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"annotation file {ann_file} is not COCO json ({error!r})") from None
        self.ann_file, self.image_dir = ann_file, image_dir
        self.flip_prob = flip_prob
        self.seed = seed
        ids = sorted(self.coco.imgs)
        if remove_images_without_annotations:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) and _valid_box(a["bbox"])
                                         for a in self.coco.imgToAnns.get(i, []))]
            if not ids:  # "0 images" further on would blame the images, not the missing boxes
                found = (f"has {len(self.coco.imgs)} images but none with a box ({len(self.coco.anns)} annotations; "
                         "crowd boxes and boxes under 1 px do not count)" if self.coco.imgs else "lists no images")
                raise ValueError(f"annotation file {ann_file} {found}; training needs images with boxes")
        self.ids = ids
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {cat: i + 1 for i, cat in enumerate(self.cat_ids)}
        self.label_to_cat_id = {label: cat for cat, label in self.cat_id_to_label.items()}
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Flips are a function of (seed, epoch, index): the same run gives the same batches, resumed or not."""
        self.epoch = epoch

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        image = read_image(os.path.join(self.image_dir, info["file_name"]))
        height, width = image.shape[-2:]
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or not _valid_box(ann["bbox"]):
                continue
            x, y, w, h = ann["bbox"]
            box = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # outside the image: maskrcnn-benchmark's clip_to_image(remove_empty=True)
            if ann["category_id"] not in self.cat_id_to_label:
                raise KeyError(f"annotation {ann.get('id')} of {self.ann_file} has category_id {ann['category_id']}, "
                               f"which is not among its categories {self.cat_ids}")
            boxes.append(box)
            labels.append(self.cat_id_to_label[ann["category_id"]])
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(labels, dtype=torch.int64)
        if self.flip_prob > 0:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            if torch.rand((), generator=gen).item() < self.flip_prob:
                image, boxes = hflip(image, boxes)
        return image, dict(boxes=boxes, labels=labels, image_id=int(image_id))


def _valid_box(bbox) -> bool:
    return bbox[2] >= 1 and bbox[3] >= 1


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror an image [3,H,W] and its xyxy boxes left-right (x -> W - x, so x1 and x2 swap)."""
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image.flip(-1), flipped


def collate(batch):
    """A list of (image, target) -> (list of images, list of targets): the detector batches itself."""
    images, targets = zip(*batch)
    return list(images), list(targets)


# ---- catalog ----------------------------------------------------------------------------------------
# FCOS's paths_catalog names (relative to the data root), plus resbone's generated shapes sets.
_CATALOG: dict[str, tuple[str, str]] = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": ("coco/val2014", "coco/annotations/instances_valminusminival2014.json"),
}
_SHAPES = ("shapes_train", "shapes_val")


def register_dataset(name: str, image_dir: str, ann_file: str) -> None:
    """Make `name` usable in DATASETS.TRAIN / DATASETS.TEST (paths absolute or relative to the data root)."""
    _CATALOG[name] = (image_dir, ann_file)


def data_root(root: str = "") -> str:
    """DATASETS.ROOT if set, else $RESBONE_DATA, else ./datasets."""
    return os.path.abspath(root or os.environ.get("RESBONE_DATA") or "datasets")


def shapes_dir(root: str, *, num_train: int, num_val: int, image_size: int, seed: int) -> str:
    return os.path.join(data_root(root), f"shapes_{image_size}px_{num_train}_{num_val}_seed{seed}")


def resolve_dataset(name: str, *, root: str = "", shapes: dict | None = None) -> tuple[str, str]:
    """(image_dir, ann_file) of a data-set name; shapes_train / shapes_val are generated on first use
    with `shapes` = dict(num_train, num_val, image_size, seed)."""
    if name in _SHAPES:
        from resbone.detection.data.shapes import SHAPES_DEFAULTS, generate_shapes_split

        settings = {**SHAPES_DEFAULTS, **(shapes or {})}
        out_dir = shapes_dir(root, **settings)
        split = name.split("_", 1)[1]
        ann_file = os.path.join(out_dir, "annotations", f"instances_{split}.json")
        if not os.path.isfile(ann_file):
            generate_shapes_split(out_dir, split, num_images=settings[f"num_{split}"],
                                  image_size=settings["image_size"], seed=settings["seed"])
        return os.path.join(out_dir, split), ann_file
    if name not in _CATALOG:
        known = ", ".join(sorted(list(_CATALOG) + list(_SHAPES)))
        raise KeyError(f"unknown data set {name!r}; known: {known} (or register_dataset(name, image_dir, "
                       "ann_file))")
    image_dir, ann_file = (os.path.join(data_root(root), p) for p in _CATALOG[name])
    if not os.path.isfile(ann_file):
        raise ValueError(f"data set {name!r}: annotation file {ann_file} does not exist; put the data under "
                         f"{data_root(root)} (DATASETS.ROOT or $RESBONE_DATA)")
    return image_dir, ann_file
