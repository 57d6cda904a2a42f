"""The re-id task's configuration: resbone.reid.defaults merged from YAML files and `KEY VALUE` overrides, with
the engine's checks (resbone.engine.config) and this task's.

Anchor: the classification task's config (resbone.classification.config): unknown keys are refused with the
closest names, a value out of its range or choices names the key and what is allowed.
Proven by tests/reid/test_task.py.
"""
from __future__ import annotations

import math
from typing import Iterable

from resbone.engine.config import CfgNode, check_values, load_config
from resbone.reid.data import NAMINGS
from resbone.reid.defaults import reid_cfg
from resbone.reid.metrics import METRICS
from resbone.reid.model import POOLINGS
from resbone.utils.checks import is_int

__all__ = ["check_reid_cfg", "get_cfg", "load_cfg"]

_CHOICES = {"MODEL.POOLING": POOLINGS, "MODEL.LAST_STRIDE": (1, 2), "DATASETS.NAMING": tuple(NAMINGS),
            "TEST.METRIC": METRICS}
_RANGES = {
    "MODEL.GEM_P": (0, math.inf, False, False), "MODEL.BASE_CHANNELS": (0, math.inf, True, False),
    "DATALOADER.NUM_INSTANCE": (2, math.inf, True, False), "INPUT.HFLIP_PROB": (0, 1, True, True),
    "INPUT.PADDING": (0, math.inf, True, False), "INPUT.RANDOM_ERASE": (0, 1, True, True),
    "SOLVER.LABEL_SMOOTHING": (0, 1, True, False), "SOLVER.MARGIN": (0, math.inf, True, False),
    "SOLVER.CENTER_LOSS_WEIGHT": (0, math.inf, True, False), "SOLVER.CENTER_LR_FACTOR": (0, math.inf, True, False),
    "TEST.RANKED_QUERIES": (0, math.inf, True, False),
}


def get_cfg() -> CfgNode:
    return CfgNode(reid_cfg())


def check_reid_cfg(cfg: CfgNode) -> None:
    check_values(cfg, _CHOICES, _RANGES)
    if not cfg.MODEL.NAME:
        raise ValueError("MODEL.NAME is empty; name a registered backbone (`resbone list`), e.g. "
                         "MODEL.NAME resnet50_ibn_a")
    for key in ("MODEL.BASE_CHANNELS", "DATALOADER.NUM_INSTANCE", "INPUT.PADDING", "TEST.RANKED_QUERIES"):
        section, name = key.split(".")
        if not is_int(cfg[section][name]):
            raise ValueError(f"{key} must be a whole number, got {cfg[section][name]!r}")
    size = cfg.INPUT.SIZE
    if len(size) != 2 or not all(is_int(s) and s >= 32 for s in size):
        raise ValueError(f"INPUT.SIZE must be (height, width), two whole numbers >= 32, got {tuple(size)}")
    k = cfg.DATALOADER.NUM_INSTANCE
    if cfg.SOLVER.IMS_PER_BATCH % k or cfg.SOLVER.IMS_PER_BATCH // k < 2:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be P x DATALOADER.NUM_INSTANCE "
                         f"({k}) with P >= 2 identities per batch, e.g. {16 * k} for P = 16")


def load_cfg(path: str | None = None, opts: Iterable[str] = (), *, freeze: bool = True) -> CfgNode:
    """get_cfg() + the YAML file + the overrides, checked and (by default) frozen."""
    return load_config(reid_cfg(), path, opts, check=check_reid_cfg, freeze=freeze)
