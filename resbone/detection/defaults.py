"""The config keys the FCOS detector reads, with FCOS's defaults, plus the few keys resbone adds.

Anchor: tianzhi0549/FCOS `fcos_core/config/defaults.py` (the yacs tree whose YAML files must load
unchanged). `FCOS_MODEL_DEFAULTS` lists every FCOS key `build_detector` reads, with FCOS's default;
`RESBONE_FCOS_DEFAULTS` lists the keys resbone adds so one config can also reproduce torchvision's
`fcos_resnet50_fpn` exactly (see `TORCHVISION_FCOS_OVERRIDES`). The engine's `get_cfg()` merges both
with `add_fcos_config(cfg)`; nothing here overrides a key that is already present.
Reference test: tests/detection/test_torchvision_equality.py (uses TORCHVISION_FCOS_OVERRIDES).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

# FCOS's own keys and defaults (fcos_core/config/defaults.py). Note that FCOS's YAML files set
# RETINANET.USE_C5 False, RESNETS.BACKBONE_OUT_CHANNELS 256, DATALOADER.SIZE_DIVISIBILITY 32.
FCOS_MODEL_DEFAULTS: dict[str, Any] = {
    "MODEL": {
        "WEIGHT": "",
        "BACKBONE": {"CONV_BODY": "R-50-FPN-RETINANET", "FREEZE_CONV_BODY_AT": 2, "USE_GN": False},
        "RESNETS": {
            "NUM_GROUPS": 1, "WIDTH_PER_GROUP": 64, "STRIDE_IN_1X1": True,
            "BACKBONE_OUT_CHANNELS": 256 * 4, "RES2_OUT_CHANNELS": 256, "STEM_OUT_CHANNELS": 64,
            "STAGE_WITH_DCN": (False, False, False, False), "WITH_MODULATED_DCN": False,
            "DEFORMABLE_GROUPS": 1, "RES5_DILATION": 1,
        },
        "FPN": {"USE_GN": False, "USE_RELU": False},
        "RETINANET": {"USE_C5": True},
        "FCOS": {
            "NUM_CLASSES": 81,  # including background, as FCOS counts
            "FPN_STRIDES": [8, 16, 32, 64, 128],
            "PRIOR_PROB": 0.01,
            "INFERENCE_TH": 0.05,
            "NMS_TH": 0.6,
            "PRE_NMS_TOP_N": 1000,
            "LOSS_ALPHA": 0.25,
            "LOSS_GAMMA": 2.0,
            "NUM_CONVS": 4,
            "CENTER_SAMPLING_RADIUS": 0.0,
            "IOU_LOSS_TYPE": "iou",
            "NORM_REG_TARGETS": False,
            "CENTERNESS_ON_REG": False,
            "USE_DCN_IN_TOWER": False,
        },
    },
    "INPUT": {
        "MIN_SIZE_TRAIN": (800,),
        "MIN_SIZE_RANGE_TRAIN": (-1, -1),
        "MAX_SIZE_TRAIN": 1333,
        "MIN_SIZE_TEST": 800,
        "MAX_SIZE_TEST": 1333,
        "PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
        "PIXEL_STD": [1.0, 1.0, 1.0],
        "TO_BGR255": True,
    },
    "DATALOADER": {"SIZE_DIVISIBILITY": 0},
    "TEST": {"DETECTIONS_PER_IMG": 100, "BBOX_AUG": {"ENABLED": False}},
}

# Keys resbone adds. Each default reproduces FCOS; the comment says what torchvision does instead.
RESBONE_FCOS_DEFAULTS: dict[str, Any] = {
    "MODEL": {
        # eps of the backbone's FrozenBatchNorm2d: FCOS's has none (0.0); torchvision's 1e-5.
        "BACKBONE": {"FROZEN_BN_EPS": 0.0},
        "FCOS": {
            # Where a feature-map cell's location sits: 'half_stride' = x*stride + stride//2 (FCOS),
            # 'zero' = x*stride (torchvision's anchor centres).
            "LOCATION_OFFSET": "half_stride",
            # What INFERENCE_TH is compared with: 'cls' = sigmoid(cls) (FCOS),
            # 'sqrt_cls_ctr' = sqrt(sigmoid(cls) * sigmoid(ctr)), the final score (torchvision).
            "SCORE_TH_ON": "cls",
            # Regression-loss weighting: 'centerness' = weighted by centerness targets, divided by
            # their sum (FCOS); 'none' = plain sum divided by the number of positives (torchvision).
            "REG_LOSS_WEIGHTING": "centerness",
            # Object size range per level, on max(l, t, r, b), bounds inclusive as FCOS
            # (torchvision uses the same numbers with strict bounds).
            "SIZES_OF_INTEREST": [[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0], [256.0, 512.0],
                                  [512.0, 100000000.0]],
            # Deformable conv in the last tower conv when USE_DCN_IN_TOWER: FCOS's DFConv2d is
            # modulated (DCNv2) by default.
            "DCN_TYPE": "DCNv2",
        },
    },
}

# What makes resbone's FCOS compute exactly what torchvision's fcos_resnet50_fpn computes (besides
# the weights, which resbone.convert.torchvision.fcos_from_torchvision maps, and NUM_CLASSES, which
# follows the converted cls_logits: torchvision's K logit channels are resbone's C = NUM_CLASSES - 1).
TORCHVISION_FCOS_OVERRIDES: dict[str, Any] = {
    "MODEL": {
        "BACKBONE": {"CONV_BODY": "R-50-FPN-RETINANET", "FROZEN_BN_EPS": 1e-5},
        "RESNETS": {"STRIDE_IN_1X1": False, "BACKBONE_OUT_CHANNELS": 256},
        "RETINANET": {"USE_C5": False},
        "FCOS": {
            "INFERENCE_TH": 0.2, "NMS_TH": 0.6, "PRE_NMS_TOP_N": 1000,
            "CENTER_SAMPLING_RADIUS": 1.5, "IOU_LOSS_TYPE": "giou", "NORM_REG_TARGETS": True,
            "CENTERNESS_ON_REG": True, "LOCATION_OFFSET": "zero", "SCORE_TH_ON": "sqrt_cls_ctr",
            "REG_LOSS_WEIGHTING": "none",
        },
    },
    "INPUT": {
        "MIN_SIZE_TRAIN": (800,), "MAX_SIZE_TRAIN": 1333, "MIN_SIZE_TEST": 800, "MAX_SIZE_TEST": 1333,
        "PIXEL_MEAN": [0.485, 0.456, 0.406], "PIXEL_STD": [0.229, 0.224, 0.225], "TO_BGR255": False,
    },
    "DATALOADER": {"SIZE_DIVISIBILITY": 32},
    "TEST": {"DETECTIONS_PER_IMG": 100},
}


def _merge_missing(node, defaults: Mapping[str, Any]) -> None:
    from yacs.config import CfgNode

    for key, value in defaults.items():
        if isinstance(value, Mapping):
            if key not in node:
                node[key] = CfgNode()
            _merge_missing(node[key], value)
        elif key not in node:
            node[key] = copy.deepcopy(value)


def add_fcos_config(cfg):
    """Add every key the detector reads (FCOS's defaults, then resbone's additions) that `cfg` lacks.
    Keys already in `cfg` are left as they are. Returns `cfg`."""
    _merge_missing(cfg, FCOS_MODEL_DEFAULTS)
    _merge_missing(cfg, RESBONE_FCOS_DEFAULTS)
    return cfg


def detector_cfg(overrides: Mapping[str, Any] | None = None):
    """A standalone yacs CfgNode holding only the detector's keys with their defaults, with nested
    `overrides` applied (for tests and scripts that do not need the engine's full config)."""
    from yacs.config import CfgNode

    cfg = add_fcos_config(CfgNode())
    if overrides:
        _apply(cfg, overrides, prefix="")
    return cfg


def _apply(node, overrides: Mapping[str, Any], *, prefix: str) -> None:
    for key, value in overrides.items():
        if key not in node:
            raise KeyError(f"unknown config key {prefix + key!r}; known keys here: {sorted(node)}")
        if isinstance(value, Mapping):
            _apply(node[key], value, prefix=f"{prefix}{key}.")
        else:
            node[key] = copy.deepcopy(value)
