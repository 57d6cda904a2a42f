"""A synthetic detection set: coloured squares, circles and triangles on noisy backgrounds, as COCO json + PNG.

Objects range from small (~12% of the image side) to large (~70%), may occlude each other (the box is the
visible part's, as COCO boxes are, and an object less than 35% visible is dropped) and every image is a
pure function of (seed, split, index), so the set is the same on every machine. Used by the built-in
`shapes_train` / `shapes_val` names and `resbone data shapes`. Proven by tests/detection/test_data.py.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from resbone.utils.files import atomic_write

__all__ = ["SHAPE_CLASSES", "SHAPES_DEFAULTS", "generate_shapes", "generate_shapes_split"]

SHAPE_CLASSES = ("square", "circle", "triangle")
# The one place the set's default size is written (`resbone data shapes`, DATASETS.SHAPES, shapes_train/val).
SHAPES_DEFAULTS = dict(num_train=1000, num_val=200, image_size=160, seed=0)
_SPLIT_KEYS = {"train": 1, "val": 2, "test": 3}


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, size: float, angle: float,
                fill) -> None:
    half = size / 2
    if kind == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
        return
    if kind == "square":
        corners = [angle + math.pi / 4 + k * math.pi / 2 for k in range(4)]
        radius = half * math.sqrt(2) * 0.85  # a rotated square keeps roughly the requested extent
    else:
        corners = [angle - math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        radius = half * 1.1
    draw.polygon([(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners], fill=fill)


def _render(rng: np.random.Generator, size: int, *, min_frac: float = 0.12, max_frac: float = 0.7,
            max_objects: int = 6):
    background = rng.integers(0, 256, size=3)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    instances = Image.new("L", (size, size), 0)
    draw, draw_ids = ImageDraw.Draw(image), ImageDraw.Draw(instances)
    objects = []
    for index in range(int(rng.integers(1, max_objects + 1))):
        kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        # log-uniform sizes: as many small objects as large ones
        extent = size * math.exp(rng.uniform(math.log(min_frac), math.log(max_frac)))
        cx, cy = rng.uniform(extent / 3, size - extent / 3, size=2)
        color = rng.integers(0, 256, size=3)
        while np.abs(color.astype(int) - background).sum() < 150:  # keep the object visible
            color = rng.integers(0, 256, size=3)
        angle = rng.uniform(0, 2 * math.pi)
        _draw_shape(draw, kind, cx, cy, extent, angle, tuple(int(c) for c in color))
        _draw_shape(draw_ids, kind, cx, cy, extent, angle, index + 1)
        alone = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(alone), kind, cx, cy, extent, angle, 1)
        objects.append((kind, int(np.asarray(alone).sum())))
    pixels = np.asarray(image).astype(np.float32)
    pixels = np.clip(pixels + rng.normal(0, 8, size=pixels.shape), 0, 255).astype(np.uint8)
    ids = np.asarray(instances)
    annotations = []
    for index, (kind, full_area) in enumerate(objects):
        mask = ids == index + 1
        area = int(mask.sum())
        # an object mostly hidden by later ones is no longer a fair target
        if area < 16 or area < 0.35 * full_area:
            continue
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        annotations.append(dict(category=kind, bbox=[x0, y0, x1 - x0, y1 - y0], area=area))
    return Image.fromarray(pixels), annotations


def generate_shapes_split(out_dir: str, split: str, *, num_images: int, image_size: int = 160,
                          seed: int = 0) -> str:
    """Write `out_dir/<split>/NNNNNN.png` and `out_dir/annotations/instances_<split>.json`; return the json path."""
    if split not in _SPLIT_KEYS:
        raise ValueError(f"split must be one of {', '.join(_SPLIT_KEYS)}, got {split!r}")
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32 pixels, got {image_size!r}")
    image_dir = os.path.join(out_dir, split)
    try:
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    except OSError as error:  # a file in the way, no permission
        raise ValueError(f"cannot create the shapes set's folder {out_dir}: {error}") from None
    categories = [dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(SHAPE_CLASSES)]
    cat_ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_KEYS[split], index])
        image, objects = _render(rng, image_size)
        file_name = f"{index + 1:06d}.png"
        path = os.path.join(image_dir, file_name)
        with atomic_write(path) as handle:  # another process may be generating the same set
            image.save(handle, format="PNG")
        images.append(dict(id=index + 1, file_name=file_name, width=image_size, height=image_size))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1,
                                    category_id=cat_ids[obj["category"]], bbox=obj["bbox"],
                                    area=obj["area"], iscrowd=0))
    ann_file = os.path.join(out_dir, "annotations", f"instances_{split}.json")
    with atomic_write(ann_file, "w") as handle:  # the json appears last and whole: the split is complete
        json.dump(dict(images=images, annotations=annotations, categories=categories,
                       info=dict(description=f"resbone shapes, seed {seed}, {image_size}px")), handle)
    return ann_file


def generate_shapes(out_dir: str, *, num_train: int = SHAPES_DEFAULTS["num_train"],
                    num_val: int = SHAPES_DEFAULTS["num_val"], image_size: int = SHAPES_DEFAULTS["image_size"],
                    seed: int = SHAPES_DEFAULTS["seed"]) -> dict[str, str]:
    """Both splits; returns {'train': json path, 'val': json path}."""
    return {split: generate_shapes_split(out_dir, split, num_images=n, image_size=image_size, seed=seed)
            for split, n in (("train", num_train), ("val", num_val))}
