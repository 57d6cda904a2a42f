"""The classification task's configuration: resbone.classification.defaults merged from YAML files and
`KEY VALUE` overrides, with the engine's checks (resbone.engine.config) and this task's.

Anchor: the detector's config (resbone.detection.config): unknown keys are refused with the closest names.
Proven by tests/classification/test_task.py.
"""
from __future__ import annotations

import math
from typing import Iterable

from resbone.classification.defaults import AUTO_AUGMENTS, classification_cfg
from resbone.engine.config import CfgNode, check_values, load_config

__all__ = ["check_classification_cfg", "get_cfg", "load_cfg"]

_INTERPOLATIONS = ("", "bilinear", "bicubic", "nearest")
_CHOICES = {"INPUT.AUTO_AUGMENT": AUTO_AUGMENTS, "INPUT.INTERPOLATION": _INTERPOLATIONS}
_RANGES = {
    "MODEL.NUM_CLASSES": (0, math.inf, True, False), "MODEL.FROZEN_STAGES": (-1, math.inf, True, False),
    "INPUT.SIZE": (0, math.inf, True, False), "INPUT.TEST_SIZE": (0, math.inf, True, False),
    "INPUT.CROP_PCT": (0, 1, True, True), "INPUT.HFLIP_PROB": (0, 1, True, True),
    "INPUT.RANDOM_ERASE": (0, 1, True, True), "INPUT.MIXUP_ALPHA": (0, math.inf, True, False),
    "INPUT.CUTMIX_ALPHA": (0, math.inf, True, False), "SOLVER.LABEL_SMOOTHING": (0, 1, True, False),
    "SOLVER.BACKBONE_LR_FACTOR": (0, math.inf, True, False),
}


def get_cfg() -> CfgNode:
    return CfgNode(classification_cfg())


def check_classification_cfg(cfg: CfgNode) -> None:
    check_values(cfg, _CHOICES, _RANGES)
    if not cfg.MODEL.NAME:
        raise ValueError("MODEL.NAME is empty; name a registered model (`resbone list`), e.g. MODEL.NAME resnet18")
    for key in ("MEAN", "STD"):
        if len(cfg.INPUT[key]) not in (0, 3):
            raise ValueError(f"INPUT.{key} must be empty (the model's) or three numbers, got {cfg.INPUT[key]}")
    for key in ("SCALE", "RATIO"):
        low_high = cfg.INPUT[key]
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
            raise ValueError(f"INPUT.{key} must be (low, high) with 0 < low <= high, got {tuple(low_high)}")


def load_cfg(path: str | None = None, opts: Iterable[str] = (), *, freeze: bool = True) -> CfgNode:
    """get_cfg() + the YAML file + the overrides, checked and (by default) frozen."""
    return load_config(classification_cfg(), path, opts, check=check_classification_cfg, freeze=freeze)
