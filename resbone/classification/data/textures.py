"""A generated, seeded classification set whose classes need shape AND texture: a circle, square or
triangle filled with stripes or a checkerboard (6 classes, `circle_stripes` ... `triangle_checker`), in
random colours (two per texture, drawn apart from the background's), size, place, angle and period, written
as an ImageFolder (train/<class>/NNNNNN.png, val/<class>/...).

No class has a colour of its own: a network must see the outline and the pattern. Anchor: the detection
demo's generated set (resbone.detection.data.shapes); numpy's seeded Generator, Pillow for the outlines.
Proven by tests/classification/test_data.py (seeded, balanced, loads as torchvision's ImageFolder).
"""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw

from resbone.utils.checks import is_int
from resbone.utils.files import atomic_path

__all__ = ["SHAPES", "TEXTURES", "TEXTURE_CLASSES", "TEXTURES_DEFAULTS", "render_texture_image", "generate_textures"]

SHAPES = ("circle", "square", "triangle")
TEXTURES = ("stripes", "checker")
TEXTURE_CLASSES = tuple(f"{shape}_{texture}" for shape in SHAPES for texture in TEXTURES)
# per class: 6 x 300 training and 6 x 60 validation images of 64 px
TEXTURES_DEFAULTS = dict(num_train=300, num_val=60, image_size=64, seed=0)
_SPLIT_KEYS = {"train": 1, "val": 2, "test": 3}


def _outline(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of the shape, 56-84% of the image across, at a random place and angle."""
    radius = size * rng.uniform(0.28, 0.42)
    cx, cy = rng.uniform(radius, size - radius, size=2)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    else:
        corners = 4 if shape == "square" else 3
        angle = rng.uniform(0, 2 * math.pi)
        scale = radius if corners == 3 else radius * 1.1  # a square's corners reach further than its sides
        draw.polygon([(cx + scale * math.cos(angle + 2 * math.pi * k / corners),
                       cy + scale * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)], fill=255)
    return np.asarray(mask) > 127


def _pattern(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean pattern: stripes or a checkerboard, at a random angle, period and phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    period = size * rng.uniform(0.12, 0.2)  # 8-13 px at 64 px: coarse enough to survive the stem's stride 4
    u = (x * math.cos(angle) + y * math.sin(angle)) / period + rng.uniform(0, 1)
    if texture == "stripes":
        return (u % 1.0) < 0.5
    v = (-x * math.sin(angle) + y * math.cos(angle)) / period + rng.uniform(0, 1)
    return (np.floor(u) + np.floor(v)) % 2 == 0


def _colour_away_from(reference: np.ndarray, rng: np.random.Generator, distance: float = 90.0) -> np.ndarray:
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - reference) >= distance:
            return colour


def render_texture_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An HxWx3 uint8 image of class TEXTURE_CLASSES[label]."""
    shape, texture = SHAPES[label // len(TEXTURES)], TEXTURES[label % len(TEXTURES)]
    background = rng.uniform(0, 255, size=3)
    first = _colour_away_from(background, rng)
    second = _colour_away_from((background + first) / 2, rng, distance=60.0)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    pattern = _pattern(texture, size, rng)
    mask = _outline(shape, size, rng)
    image[mask & pattern] = first
    image[mask & ~pattern] = second
    image += rng.normal(0, 6.0, size=image.shape)  # sensor-like noise: no two pixels of a colour alike
    return np.clip(image, 0, 255).round().astype(np.uint8)


def generate_textures_split(out_dir: str, split: str, *, per_class: int, image_size: int = 64,
                            seed: int = 0) -> str:
    """Write out_dir/<split>/<class>/NNNNNN.png, `per_class` images per class; returns the split's folder."""
    if split not in _SPLIT_KEYS:
        raise ValueError(f"split must be one of {', '.join(_SPLIT_KEYS)}, got {split!r}")
    for name, value, low in (("per_class", per_class, 1), ("image_size", image_size, 32)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    rng = np.random.default_rng([seed, _SPLIT_KEYS[split]])
    root = os.path.join(out_dir, split)
    for index in range(per_class * len(TEXTURE_CLASSES)):
        label = index % len(TEXTURE_CLASSES)
        folder = os.path.join(root, TEXTURE_CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{index // len(TEXTURE_CLASSES):06d}.png")
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(render_texture_image(label, image_size, rng)).save(tmp)
    return root


def generate_textures(out_dir: str, *, num_train: int = TEXTURES_DEFAULTS["num_train"],
                      num_val: int = TEXTURES_DEFAULTS["num_val"], image_size: int = TEXTURES_DEFAULTS["image_size"],
                      seed: int = TEXTURES_DEFAULTS["seed"]) -> dict[str, str]:
    """The train and val splits (num_train / num_val images per class); {split: folder}."""
    return {split: generate_textures_split(out_dir, split, per_class=count, image_size=image_size, seed=seed)
            for split, count in (("train", num_train), ("val", num_val))}
