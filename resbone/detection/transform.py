"""The detector's own pre- and post-processing: normalize, resize, pad to a batch; boxes back.

Anchor: torchvision's `models/detection/transform.py` (GeneralizedRCNNTransform: normalize, then
bilinear resize with scale = min(min_size / short side, max_size / long side) and
recompute_scale_factor=True, zero padding up to a multiple of size_divisible, boxes scaled by the
per-axis size ratio), with FCOS's input conventions on top (INPUT.TO_BGR255: RGB 0..1 -> BGR 0..255
before PIXEL_MEAN / PIXEL_STD, as maskrcnn-benchmark's `build_transforms`).
Reference test: tests/detection/test_torchvision_equality.py (same batched tensor as torchvision).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DetectionTransform", "resize_boxes"]


def resize_boxes(boxes: torch.Tensor, old_size: Sequence[int], new_size: Sequence[int]) -> torch.Tensor:
    """Scale xyxy boxes from an image of size (h, w) `old_size` to one of size `new_size`."""
    ratio_h = float(new_size[0]) / float(old_size[0])
    ratio_w = float(new_size[1]) / float(old_size[1])
    return boxes * boxes.new_tensor([ratio_w, ratio_h, ratio_w, ratio_h])


class DetectionTransform(nn.Module):
    """Turns a list of RGB 0..1 images [3, H, W] into one padded, normalized batch.

    Training picks the shorter-side size at random among `min_size_train` per image (FCOS's
    multi-scale training); evaluation uses `min_size_test`. The longer side is capped at max_size_*.
    """

    def __init__(self, *, min_size_train: Sequence[int], max_size_train: int, min_size_test: int,
                 max_size_test: int, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 to_bgr255: bool, size_divisibility: int):
        super().__init__()
        if isinstance(min_size_train, int):
            min_size_train = (min_size_train,)
        sizes = [*min_size_train, max_size_train, min_size_test, max_size_test]
        if not min_size_train or any(not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(f"INPUT sizes must be positive ints, got MIN_SIZE_TRAIN={tuple(min_size_train)!r}, "
                             f"MAX_SIZE_TRAIN={max_size_train!r}, MIN_SIZE_TEST={min_size_test!r}, "
                             f"MAX_SIZE_TEST={max_size_test!r}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or any(s == 0 for s in pixel_std):
            raise ValueError(f"INPUT.PIXEL_MEAN and INPUT.PIXEL_STD must hold 3 numbers (std non-zero), "
                             f"got {list(pixel_mean)!r} and {list(pixel_std)!r}")
        if not isinstance(size_divisibility, int) or size_divisibility < 0:
            raise ValueError(f"DATALOADER.SIZE_DIVISIBILITY must be an int >= 0, got {size_divisibility!r}")
        self.min_size_train = tuple(min_size_train)
        self.max_size_train = max_size_train
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.to_bgr255 = bool(to_bgr255)
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if self.to_bgr255:
            image = image.flip(0) * 255.0
        return (image - self.pixel_mean.to(image)) / self.pixel_std.to(image)

    def target_size(self, height: int, width: int) -> float:
        """The scale factor for an image of this size (training draws the shorter side at random)."""
        if self.training:
            index = int(torch.randint(len(self.min_size_train), ()).item())
            min_size, max_size = self.min_size_train[index], self.max_size_train
        else:
            min_size, max_size = self.min_size_test, self.max_size_test
        return min(min_size / min(height, width), max_size / max(height, width))

    def forward(self, images: Sequence[torch.Tensor], targets: Optional[Sequence[dict]] = None
                ) -> tuple[torch.Tensor, list[tuple[int, int]], Optional[list[dict]]]:
        """Returns (batch [N, 3, Hp, Wp], resized sizes [(h, w)] before padding, resized targets)."""
        resized, sizes, new_targets = [], [], [] if targets is not None else None
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            scale = self.target_size(h, w)
            if math.floor(h * scale) < 1 or math.floor(w * scale) < 1:
                raise ValueError(f"image {i} ({h}x{w} pixels) would be resized to "
                                 f"{math.floor(h * scale)}x{math.floor(w * scale)}: its aspect ratio is too extreme "
                                 f"for the MIN_SIZE / MAX_SIZE of INPUT (the longer side is capped first)")
            # torchvision normalizes before resizing; both are linear per channel, so the order only
            # matters to rounding, and following torchvision keeps the batch bit-comparable.
            image = F.interpolate(self.normalize(image)[None], scale_factor=scale, mode="bilinear",
                                  recompute_scale_factor=True, align_corners=False)[0]
            resized.append(image)
            sizes.append((int(image.shape[-2]), int(image.shape[-1])))
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = resize_boxes(target["boxes"], (h, w), sizes[-1])
                new_targets.append(target)
        return self.batch(resized), sizes, new_targets

    def batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        height = max(int(im.shape[-2]) for im in images)
        width = max(int(im.shape[-1]) for im in images)
        if self.size_divisibility > 0:
            d = self.size_divisibility
            height, width = int(math.ceil(height / d) * d), int(math.ceil(width / d) * d)
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for image, slot in zip(images, batch):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    @staticmethod
    def postprocess(detections: list[dict], image_sizes: Sequence[tuple[int, int]],
                    original_sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """Map boxes from the resized images back to the input images' pixels."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
        return detections
