"""The classification recipe's transforms, all torchvision.transforms.v2: training (RandomResizedCrop, flip,
TrivialAugmentWide / RandAugment / AutoAugment / AugMix, RandomErasing), evaluation (resize, center crop),
and MixUp / CutMix on each training batch.

Anchor: torchvision's `references/classification/presets.py` (ClassificationPresetTrain / Eval, in their
order) and `transforms.py` / `train.py` (`get_mixup_cutmix`: v2.RandomChoice of v2.MixUp and v2.CutMix
applied after default_collate; the task applies it in the main process, not in the collate of a loader
worker, so that a resumed run draws what an uninterrupted one drew). Mean, std, interpolation, input size
and crop_pct default to the model's `pretrained_cfg` (timm's `resolve_data_config`). Proven by
tests/classification/test_transforms.py.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torchvision.transforms import InterpolationMode, v2

from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["data_settings", "build_train_transform", "build_eval_transform", "build_batch_mix"]

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


def data_settings(cfg, pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """Size, test size, crop_pct, mean, std and interpolation: the config's, else the model's pretrained_cfg's."""
    default_size = int(pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    size = cfg.INPUT.SIZE or default_size
    return dict(size=size, test_size=cfg.INPUT.TEST_SIZE or size,
                crop_pct=cfg.INPUT.CROP_PCT or float(pretrained_cfg.get("crop_pct", 0.875)),
                mean=tuple(cfg.INPUT.MEAN or pretrained_cfg.get("mean", IMAGENET_MEAN)),
                std=tuple(cfg.INPUT.STD or pretrained_cfg.get("std", IMAGENET_STD)),
                interpolation=cfg.INPUT.INTERPOLATION or pretrained_cfg.get("interpolation", "bilinear"))


def _auto_augment(name: str, interpolation: InterpolationMode) -> list:
    if not name:
        return []
    policies = {"ta_wide": lambda: v2.TrivialAugmentWide(interpolation=interpolation),
                "ra": lambda: v2.RandAugment(interpolation=interpolation),
                "autoaugment": lambda: v2.AutoAugment(interpolation=interpolation),
                "augmix": lambda: v2.AugMix(interpolation=interpolation)}
    return [policies[name]()]


def _to_normalized_tensor(mean, std) -> list:
    return [v2.PILToTensor(), v2.ToDtype(torch.float, scale=True), v2.Normalize(mean=mean, std=std)]


def build_train_transform(cfg, pretrained_cfg: dict[str, Any]) -> v2.Compose:
    """ClassificationPresetTrain: RandomResizedCrop, horizontal flip, auto augment, to float, normalise,
    random erasing."""
    data = data_settings(cfg, pretrained_cfg)
    interpolation = _INTERPOLATION[data["interpolation"]]
    steps = [v2.RandomResizedCrop(data["size"], scale=tuple(cfg.INPUT.SCALE), ratio=tuple(cfg.INPUT.RATIO),
                                  interpolation=interpolation, antialias=True)]
    if cfg.INPUT.HFLIP_PROB > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.INPUT.HFLIP_PROB))
    steps += _auto_augment(cfg.INPUT.AUTO_AUGMENT, interpolation)
    steps += _to_normalized_tensor(data["mean"], data["std"])
    if cfg.INPUT.RANDOM_ERASE > 0:
        steps.append(v2.RandomErasing(p=cfg.INPUT.RANDOM_ERASE))
    return v2.Compose(steps + [v2.ToPureTensor()])


def build_eval_transform(cfg, pretrained_cfg: dict[str, Any]) -> v2.Compose:
    """ClassificationPresetEval: resize the short side to size / crop_pct, center-crop size, normalise."""
    data = data_settings(cfg, pretrained_cfg)
    resize = math.floor(data["test_size"] / data["crop_pct"])  # timm's transforms_factory: floor
    return v2.Compose([v2.Resize(resize, interpolation=_INTERPOLATION[data["interpolation"]], antialias=True),
                       v2.CenterCrop(data["test_size"]), *_to_normalized_tensor(data["mean"], data["std"]),
                       v2.ToPureTensor()])


def build_batch_mix(cfg, num_classes: int) -> Callable | None:
    """torchvision's get_mixup_cutmix: v2.MixUp and / or v2.CutMix (one at random per batch); None if neither."""
    mixes = []
    if cfg.INPUT.MIXUP_ALPHA > 0:
        mixes.append(v2.MixUp(alpha=cfg.INPUT.MIXUP_ALPHA, num_classes=num_classes))
    if cfg.INPUT.CUTMIX_ALPHA > 0:
        mixes.append(v2.CutMix(alpha=cfg.INPUT.CUTMIX_ALPHA, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

