"""The detection task's configuration: FCOS's keys (resbone.detection.defaults) merged from YAML files and
`KEY VALUE` overrides with the engine's checks (resbone.engine.config), plus FCOS's own.

Anchor: tianzhi0549/FCOS `fcos_core/config/` (`cfg.merge_from_file`, `cfg.merge_from_list`). FCOS's own
YAML files load unchanged. Proven by tests/detection/test_config.py.
"""
from __future__ import annotations

import math
from typing import Iterable

from resbone.detection.compat import warn_compat_keys
from resbone.detection.defaults import detector_cfg
from resbone.detection.fcos import IOU_LOSS_TYPES
from resbone.engine.config import CfgNode, check_values, load_config

__all__ = ["check_detection_cfg", "get_cfg", "load_cfg"]

_CHOICES = {"MODEL.FCOS.IOU_LOSS_TYPE": IOU_LOSS_TYPES}
_RANGES = {"TEST.DETECTIONS_PER_IMG": (0, math.inf, False, False),
           "INPUT.HORIZONTAL_FLIP_PROB_TRAIN": (0, 1, True, True)}


def get_cfg() -> CfgNode:
    """A fresh copy of every key with its default (resbone.detection.defaults: the engine's, FCOS's, resbone's)."""
    return CfgNode(detector_cfg())


def check_detection_cfg(cfg: CfgNode) -> None:
    """FCOS's keys whose choices or ranges are known here (the model's own keys are checked by build_detector);
    one warning per key that resbone accepts from FCOS but never reads, set to other than its default
    (resbone.detection.compat)."""
    check_values(cfg, _CHOICES, _RANGES)
    warn_compat_keys(cfg)


def load_cfg(path: str | None = None, opts: Iterable[str] = (), *, freeze: bool = True) -> CfgNode:
    """get_cfg() + the YAML file + the overrides, checked and (by default) frozen."""
    return load_config(detector_cfg(), path, opts, check=check_detection_cfg, freeze=freeze)
