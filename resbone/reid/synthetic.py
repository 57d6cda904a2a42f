"""A generated re-id set: drawn people who differ by clothing, seen by cameras that change how they look.

Each identity wears an upper-body colour and pattern (plain, stripes or checks, in a second colour) and a
lower-body colour, with its own skin and hair; each camera has its own background, light, colour cast and
framing (the person's scale and place), and every image adds pose, position and sensor noise. Written in
Market-1501's layout and naming (bounding_box_train, query, bounding_box_test; `0007_c2s1_000031_00.jpg`),
with distractors (identity 0000: people not among the test identities) and junk boxes (identity -1: background
and body fragments) in the gallery, so resbone.reid.data.read_reid_folder reads it as it reads the real set.
Training and test identities are disjoint; query images come from the first two cameras. Every image is a
function of (seed, identity, camera, index): the set is the same on every machine.
Reference test: tests/reid/test_synthetic.py.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

from resbone.models._checks import check_int
from resbone.utils.files import atomic_write

__all__ = ["REID_DEFAULTS", "generate_reid_set"]

_MARKER = "resbone_reid_set.json"
# the `make demo-reid` set (`resbone data reid`): 768 training images of 64 identities, 32 held-out identities
REID_DEFAULTS = dict(train_ids=64, test_ids=32, cameras=4, per_camera=3, distractors=40, junk=20, size=(64, 32),
                     seed=0)
_PATTERNS = ("plain", "stripes", "checks")
# well separated clothing colours (RGB); an identity's colour is one of them with a small jitter
_PALETTE = np.array([(200, 30, 30), (30, 60, 200), (30, 160, 60), (230, 200, 40), (240, 240, 240), (30, 30, 30),
                     (140, 60, 170), (240, 130, 30), (110, 70, 40), (40, 180, 190), (230, 120, 170), (128, 128, 128)])


def _appearance(rng: np.random.Generator) -> dict:
    upper, lower, pattern_colour = rng.choice(len(_PALETTE), size=3, replace=False)

    def jitter(index: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.clip(_PALETTE[index] + rng.integers(-20, 21, 3), 0, 255))

    return dict(upper=jitter(upper), lower=jitter(lower), pattern_colour=jitter(pattern_colour),
                pattern=_PATTERNS[int(rng.integers(len(_PATTERNS)))], period=int(rng.integers(2, 4)),
                skin=tuple(int(c) for c in rng.integers((120, 80, 60), (240, 200, 170))),
                hair=tuple(int(c) for c in rng.integers(0, 90, 3)))


def _camera(rng: np.random.Generator) -> dict:
    return dict(background=rng.integers(40, 220, 3), gradient=rng.uniform(-60, 60, 3), gain=rng.uniform(0.65, 1.3),
                cast=rng.uniform(0.8, 1.2, 3), scale=rng.uniform(0.7, 0.95), shift=rng.uniform(-0.1, 0.1),
                clutter=[(rng.uniform(0, 1, 4), rng.integers(0, 256, 3)) for _ in range(3)])


def _background(camera: dict, height: int, width: int) -> Image.Image:
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = camera["background"][None, None, :] + ramp * camera["gradient"][None, None, :]
    image = Image.fromarray(np.clip(np.broadcast_to(pixels, (height, width, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for (x0, y0, x1, y1), colour in camera["clutter"]:
        draw.rectangle([min(x0, x1) * width, min(y0, y1) * height, max(x0, x1) * width, max(y0, y1) * height],
                       fill=tuple(int(c) for c in colour))
    return image


def _draw_torso(draw: ImageDraw.ImageDraw, look: dict, box: tuple[float, float, float, float], unit: float) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=look["upper"])
    step = max(1.0, look["period"] * unit)
    if look["pattern"] == "stripes":
        for y in np.arange(y0, y1, 2 * step):
            draw.rectangle([x0, y, x1, min(y + step - 1, y1)], fill=look["pattern_colour"])
    elif look["pattern"] == "checks":
        for row, y in enumerate(np.arange(y0, y1, step)):
            for col, x in enumerate(np.arange(x0, x1, step)):
                if (row + col) % 2:
                    draw.rectangle([x, y, min(x + step - 1, x1), min(y + step - 1, y1)], fill=look["pattern_colour"])


def _draw_person(image: Image.Image, look: dict, rng: np.random.Generator, *, scale: float, shift: float) -> None:
    width, height = image.size
    h = height * scale * rng.uniform(0.93, 1.05)
    w = h * 0.4
    cx = width * (0.5 + shift + rng.uniform(-0.06, 0.06))
    top = height - h - height * rng.uniform(0.0, 0.05)
    unit, draw = h / 64, ImageDraw.Draw(image)
    draw.ellipse([cx - 0.16 * w, top, cx + 0.16 * w, top + 0.14 * h], fill=look["skin"])
    draw.chord([cx - 0.17 * w, top - 0.01 * h, cx + 0.17 * w, top + 0.1 * h], 180, 360, fill=look["hair"])
    spread = rng.uniform(0.0, 0.12) * w  # the stride of the legs
    for side in (-1, 1):
        x = cx + side * (0.14 * w + spread / 2)
        draw.rectangle([x - 0.1 * w, top + 0.52 * h, x + 0.1 * w, top + 0.95 * h], fill=look["lower"])
        draw.rectangle([x - 0.11 * w, top + 0.95 * h, x + 0.12 * w, top + h], fill=(25, 25, 25))
        draw.rectangle([cx + side * 0.3 * w - 0.08 * w, top + 0.16 * h, cx + side * 0.3 * w + 0.08 * w,
                        top + 0.5 * h], fill=look["upper"])
    _draw_torso(draw, look, (cx - 0.25 * w, top + 0.15 * h, cx + 0.25 * w, top + 0.55 * h), unit)


def _finish(image: Image.Image, camera: dict, rng: np.random.Generator) -> Image.Image:
    """The camera's light and colour cast, then sensor noise."""
    pixels = np.asarray(image, dtype=np.float32) * camera["gain"] * camera["cast"][None, None, :]
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _render(seed: int, pid: int, camid: int, index: int, cameras: list[dict], looks: dict[int, dict],
            size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng([seed, pid + 2, camid, index])  # pid -1 (junk) and 0 (distractors) included
    camera = cameras[camid]
    image = _background(camera, *size)
    if pid == -1:  # junk: a fragment of a person (or none) on background, as Market-1501's junk boxes
        if rng.random() < 0.5:
            _draw_person(image, _appearance(rng), rng, scale=2.5, shift=rng.uniform(-0.4, 0.4))
    else:
        look = looks[pid] if pid else _appearance(rng)  # a distractor is a stranger every time
        _draw_person(image, look, rng, scale=camera["scale"], shift=camera["shift"])
    return _finish(image, camera, rng)


def _plan(*, train_ids: int, test_ids: int, cameras: int, per_camera: int, distractors: int,
          junk: int) -> list[tuple[str, int, int]]:
    """(folder, identity, camera) of every image, in writing order."""
    plan = []
    for pid in range(1, train_ids + 1):
        plan += [("bounding_box_train", pid, c) for c in range(cameras) for _ in range(per_camera)]
    for pid in range(train_ids + 1, train_ids + test_ids + 1):
        for c in range(cameras):
            views = ["query" if c < 2 and i == 0 else "bounding_box_test" for i in range(per_camera)]
            plan += [(folder, pid, c) for folder in views]
    plan += [("bounding_box_test", 0, i % cameras) for i in range(distractors)]
    plan += [("bounding_box_test", -1, i % cameras) for i in range(junk)]
    return plan


def generate_reid_set(root: str | os.PathLike, *, train_ids: int = 24, test_ids: int = 16, cameras: int = 4,
                      per_camera: int = 3, distractors: int = 20, junk: int = 10, size: tuple[int, int] = (64, 32),
                      seed: int = 0) -> str:
    """Write the set under `root` (the folder appears whole, or not at all) and return root. A folder this
    function wrote with the same arguments is reused; any other existing folder is an error (never overwritten).

    size is (height, width), at most Market-1501's (128, 64). Query: one image per test identity from each of
    cameras 1 and 2; gallery: the rest, plus the distractors and junk."""
    for name, value, low in (("train_ids", train_ids, 2), ("test_ids", test_ids, 1), ("cameras", cameras, 2),
                             ("per_camera", per_camera, 2), ("distractors", distractors, 0), ("junk", junk, 0)):
        check_int(name, value, low)
    if (len(size) != 2 or not all(isinstance(s, int) for s in size) or not 32 <= size[0] <= 128
            or not 16 <= size[1] <= 64):
        raise ValueError(f"size must be (height, width) ints within (32..128, 16..64), got {size!r}")
    if train_ids + test_ids > 9999 or cameras > 9:
        raise ValueError(f"Market-1501's naming allows identities up to 9999 and cameras up to 9, got "
                         f"{train_ids + test_ids} identities and {cameras} cameras")
    root = os.path.normpath(os.fspath(root))  # "set/" must not stage inside itself
    arguments = dict(train_ids=train_ids, test_ids=test_ids, cameras=cameras, per_camera=per_camera,
                     distractors=distractors, junk=junk, size=list(size), seed=seed)
    if os.path.exists(root):
        return _reuse(root, arguments)
    staging = f"{root}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write(staging, arguments)
        os.rename(staging, root)
    except OSError:
        if not os.path.isdir(root):  # not a concurrent writer that won the rename
            raise
        return _reuse(root, arguments)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _reuse(root: str, arguments: dict) -> str:
    marker = os.path.join(root, _MARKER)
    found = None
    if os.path.isfile(marker):
        with open(marker) as handle:
            found = json.load(handle)
    if found != arguments:
        what = f"a set generated with {found}" if found else "not a generated re-id set"
        raise ValueError(f"{root} exists and is {what}; pass another folder (wanted {arguments})")
    return root


def _write(staging: str, arguments: dict) -> None:
    size, seed = tuple(arguments["size"]), arguments["seed"]
    total = arguments["train_ids"] + arguments["test_ids"]
    looks = {pid: _appearance(np.random.default_rng([seed, pid, 1_000])) for pid in range(1, total + 1)}
    cameras = [_camera(np.random.default_rng([seed, 2_000, c])) for c in range(arguments["cameras"])]
    plan = _plan(**{k: arguments[k] for k in ("cameras", "per_camera", "distractors", "junk")},
                 train_ids=arguments["train_ids"], test_ids=arguments["test_ids"])
    for folder in {folder for folder, _, _ in plan}:
        os.makedirs(os.path.join(staging, folder))
    for frame, (folder, pid, camid) in enumerate(plan):
        image = _render(seed, pid, camid, frame, cameras, looks, size)
        name = f"{pid:04d}_c{camid + 1}s1_{frame:06d}_00.jpg" if pid >= 0 else f"-1_c{camid + 1}s1_{frame:06d}_00.jpg"
        image.save(os.path.join(staging, folder, name), quality=95)
    with atomic_write(os.path.join(staging, _MARKER), "w") as handle:
        json.dump(arguments, handle)
