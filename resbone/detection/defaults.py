"""Every config key of resbone's FCOS, declared once over the engine's (resbone.engine.defaults): FCOS's
keys first, then resbone's.

Anchors: tianzhi0549/FCOS `fcos_core/config/defaults.py` (itself maskrcnn-benchmark's: every key and default
of that file is here, so FCOS's own `configs/fcos/*.yaml` load unchanged) and detectron2's
`config/defaults.py` (one module-level tree, copied by whoever needs a config). `detector_cfg()` returns a
copy; `resbone.detection.config.get_cfg()` is the same tree with checked YAML / `KEY VALUE`
merging. Builders read these keys and never default them.
Reference tests: tests/detection/test_config.py (every shipped config builds a detector whose parameter
count is torchvision's FCOS), tests/detection/test_torchvision_equality.py (TORCHVISION_FCOS_OVERRIDES).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from yacs.config import CfgNode as CN

from resbone.detection.data.shapes import SHAPES_DEFAULTS
from resbone.engine.defaults import engine_cfg
from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TORCHVISION_FCOS_OVERRIDES", "detector_cfg", "leaf_keys", "require_keys"]

# ---- FCOS's keys (fcos_core/config/defaults.py), in its order, over the engine's (SOLVER, TEST, DEVICE, ...) ---
_C = engine_cfg()
_C.TASK = "detection"
_C.MODEL.RPN_ONLY = False
_C.MODEL.MASK_ON = False
_C.MODEL.FCOS_ON = True
_C.MODEL.RETINANET_ON = False
_C.MODEL.KEYPOINT_ON = False
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
_C.MODEL.CLS_AGNOSTIC_BBOX_REG = False

_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_RANGE_TRAIN = (-1, -1)  # (-1, -1): use MIN_SIZE_TRAIN
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.PIXEL_MEAN = [102.9801, 115.9465, 122.7717]
_C.INPUT.PIXEL_STD = [1., 1., 1.]
_C.INPUT.TO_BGR255 = True

_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()

_C.DATALOADER.SIZE_DIVISIBILITY = 0
_C.DATALOADER.ASPECT_RATIO_GROUPING = True

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.CONV_BODY = "R-50-C4"  # FCOS's configs all set R-50-FPN-RETINANET (or MNV2-FPN-RETINANET)
_C.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 2  # 2 = stem + layer1
_C.MODEL.BACKBONE.USE_GN = False

_C.MODEL.FPN = CN()
_C.MODEL.FPN.USE_GN = False
_C.MODEL.FPN.USE_RELU = False

_C.MODEL.GROUP_NORM = CN()
_C.MODEL.GROUP_NORM.DIM_PER_GP = -1
_C.MODEL.GROUP_NORM.NUM_GROUPS = 32
_C.MODEL.GROUP_NORM.EPSILON = 1e-5

# The two-stage detectors' sections: resbone's FCOS never reads them; they exist so that FCOS's and
# maskrcnn-benchmark's YAML files load unchanged (resbone.detection.compat lists every such key and warns
# when one is set).
_C.MODEL.RPN = CN(dict(
    USE_FPN=False, ANCHOR_SIZES=(32, 64, 128, 256, 512), ANCHOR_STRIDE=(16,), ASPECT_RATIOS=(0.5, 1.0, 2.0),
    STRADDLE_THRESH=0, FG_IOU_THRESHOLD=0.7, BG_IOU_THRESHOLD=0.3, BATCH_SIZE_PER_IMAGE=256, POSITIVE_FRACTION=0.5,
    PRE_NMS_TOP_N_TRAIN=12000, PRE_NMS_TOP_N_TEST=6000, POST_NMS_TOP_N_TRAIN=2000, POST_NMS_TOP_N_TEST=1000,
    NMS_THRESH=0.7, MIN_SIZE=0, FPN_POST_NMS_TOP_N_TRAIN=2000, FPN_POST_NMS_TOP_N_TEST=2000,
    RPN_HEAD="SingleConvRPNHead"))
_C.MODEL.ROI_HEADS = CN(dict(
    USE_FPN=False, FG_IOU_THRESHOLD=0.5, BG_IOU_THRESHOLD=0.5, BBOX_REG_WEIGHTS=(10., 10., 5., 5.),
    BATCH_SIZE_PER_IMAGE=512, POSITIVE_FRACTION=0.25, SCORE_THRESH=0.05, NMS=0.5, DETECTIONS_PER_IMG=100))
_C.MODEL.ROI_BOX_HEAD = CN(dict(
    FEATURE_EXTRACTOR="ResNet50Conv5ROIFeatureExtractor", PREDICTOR="FastRCNNPredictor", POOLER_RESOLUTION=14,
    POOLER_SAMPLING_RATIO=0, POOLER_SCALES=(1.0 / 16,), NUM_CLASSES=81, MLP_HEAD_DIM=1024, USE_GN=False,
    DILATION=1, CONV_HEAD_DIM=256, NUM_STACKED_CONVS=4))
_C.MODEL.ROI_MASK_HEAD = CN(dict(
    FEATURE_EXTRACTOR="ResNet50Conv5ROIFeatureExtractor", PREDICTOR="MaskRCNNC4Predictor", POOLER_RESOLUTION=14,
    POOLER_SAMPLING_RATIO=0, POOLER_SCALES=(1.0 / 16,), MLP_HEAD_DIM=1024, CONV_LAYERS=(256, 256, 256, 256),
    RESOLUTION=14, SHARE_BOX_FEATURE_EXTRACTOR=True, POSTPROCESS_MASKS=False, POSTPROCESS_MASKS_THRESHOLD=0.5,
    DILATION=1, USE_GN=False))
_C.MODEL.ROI_KEYPOINT_HEAD = CN(dict(
    FEATURE_EXTRACTOR="KeypointRCNNFeatureExtractor", PREDICTOR="KeypointRCNNPredictor", POOLER_RESOLUTION=14,
    POOLER_SAMPLING_RATIO=0, POOLER_SCALES=(1.0 / 16,), MLP_HEAD_DIM=1024, CONV_LAYERS=tuple(512 for _ in range(8)),
    RESOLUTION=14, NUM_CLASSES=17, SHARE_BOX_FEATURE_EXTRACTOR=True))

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.NUM_GROUPS = 1
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True  # caffe / MSRA style; False = torchvision style (stride in the 3x3)
_C.MODEL.RESNETS.TRANS_FUNC = "BottleneckWithFixedBatchNorm"
_C.MODEL.RESNETS.STEM_FUNC = "StemWithFixedBatchNorm"
_C.MODEL.RESNETS.RES5_DILATION = 1
_C.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256 * 4  # the FPN's and head's width (FCOS's configs set 256)
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.STAGE_WITH_DCN = (False, False, False, False)
_C.MODEL.RESNETS.WITH_MODULATED_DCN = False
_C.MODEL.RESNETS.DEFORMABLE_GROUPS = 1

_C.MODEL.FCOS = CN()
_C.MODEL.FCOS.NUM_CLASSES = 81  # counts the background, as FCOS does
_C.MODEL.FCOS.FPN_STRIDES = [8, 16, 32, 64, 128]
_C.MODEL.FCOS.PRIOR_PROB = 0.01
_C.MODEL.FCOS.INFERENCE_TH = 0.05
_C.MODEL.FCOS.NMS_TH = 0.6
_C.MODEL.FCOS.PRE_NMS_TOP_N = 1000
_C.MODEL.FCOS.LOSS_ALPHA = 0.25
_C.MODEL.FCOS.LOSS_GAMMA = 2.0
_C.MODEL.FCOS.NUM_CONVS = 4
_C.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 0.0  # <= 0: no center sampling
_C.MODEL.FCOS.IOU_LOSS_TYPE = "iou"  # one of resbone.detection.fcos.IOU_LOSS_TYPES
_C.MODEL.FCOS.NORM_REG_TARGETS = False
_C.MODEL.FCOS.CENTERNESS_ON_REG = False
_C.MODEL.FCOS.USE_DCN_IN_TOWER = False

# RetinaNet's section: resbone reads USE_C5 only (P6 from C5, else from P5; FCOS's configs set False).
_C.MODEL.RETINANET = CN(dict(
    NUM_CLASSES=81, ANCHOR_SIZES=(32, 64, 128, 256, 512), ASPECT_RATIOS=(0.5, 1.0, 2.0),
    ANCHOR_STRIDES=(8, 16, 32, 64, 128), STRADDLE_THRESH=0, OCTAVE=2.0, SCALES_PER_OCTAVE=3, USE_C5=True,
    NUM_CONVS=4, BBOX_REG_WEIGHT=4.0, BBOX_REG_BETA=0.11, PRE_NMS_TOP_N=1000, FG_IOU_THRESHOLD=0.5,
    BG_IOU_THRESHOLD=0.4, LOSS_ALPHA=0.25, LOSS_GAMMA=2.0, PRIOR_PROB=0.01, INFERENCE_TH=0.05, NMS_TH=0.4))
# FBNet's section: never read; declared so that FCOS's FBNet configs load.
_C.MODEL.FBNET = CN(dict(
    ARCH="default", ARCH_DEF="", BN_TYPE="bn", SCALE_FACTOR=1.0, WIDTH_DIVISOR=1, DW_CONV_SKIP_BN=True,
    DW_CONV_SKIP_RELU=True, DET_HEAD_LAST_SCALE=1.0, DET_HEAD_BLOCKS=[], DET_HEAD_STRIDE=0,
    KPTS_HEAD_LAST_SCALE=0.0, KPTS_HEAD_BLOCKS=[], KPTS_HEAD_STRIDE=0, MASK_HEAD_LAST_SCALE=0.0,
    MASK_HEAD_BLOCKS=[], MASK_HEAD_STRIDE=0, RPN_HEAD_BLOCKS=0, RPN_BN_TYPE=""))

_C.TEST.EXPECTED_RESULTS = []
_C.TEST.EXPECTED_RESULTS_SIGMA_TOL = 4
_C.TEST.DETECTIONS_PER_IMG = 100
_C.TEST.BBOX_AUG = CN(dict(ENABLED=False, H_FLIP=False, SCALES=(), MAX_SIZE=4000, SCALE_H_FLIP=False))

# FCOS points this at its paths_catalog.py; resbone's data set names are resolved by
# resbone.detection.data.dataset.resolve_dataset (resbone.detection.data.register_dataset adds one).
_C.PATHS_CATALOG = ""

# ---- resbone's additions, each with the reason it exists -------------------------------------------
# The backbone's FrozenBatchNorm2d eps: FCOS's has none (0.0), torchvision's 1e-5.
_C.MODEL.BACKBONE.FROZEN_BN_EPS = 0.0
# Where a cell's location sits: 'half_stride' = x*stride + stride//2 (FCOS), 'zero' = x*stride (torchvision).
_C.MODEL.FCOS.LOCATION_OFFSET = "half_stride"
# What INFERENCE_TH is compared with: 'cls' = sigmoid(cls) (FCOS), 'sqrt_cls_ctr' = the final score (torchvision).
_C.MODEL.FCOS.SCORE_TH_ON = "cls"
# Regression-loss weighting: 'centerness' targets over their sum (FCOS), 'none' = mean over positives (torchvision).
_C.MODEL.FCOS.REG_LOSS_WEIGHTING = "centerness"
# Object size range per level on max(l, t, r, b), bounds inclusive (FCOS hard-codes them; torchvision's are strict).
_C.MODEL.FCOS.SIZES_OF_INTEREST = [[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0], [256.0, 512.0],
                                   [512.0, 100000000.0]]
# The deformable conv of USE_DCN_IN_TOWER: FCOS's DFConv2d is modulated (DCNv2) by default.
_C.MODEL.FCOS.DCN_TYPE = "DCNv2"
# FCOS's training flips every image with probability 0.5; 0 turns the flip off.
_C.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5
# Root of the data sets, so that configs hold names, not paths; "" -> $RESBONE_DATA, else ./datasets.
_C.DATASETS.ROOT = ""
# The built-in `shapes_train` / `shapes_val` sets are generated on first use with these settings.
_C.DATASETS.SHAPES = CN({key.upper(): value for key, value in SHAPES_DEFAULTS.items()})
# What makes resbone's FCOS compute exactly what torchvision's fcos_resnet50_fpn computes (besides the
# weights, which resbone.convert.torchvision.fcos_from_torchvision maps, and NUM_CLASSES, which follows the
# converted cls_logits: torchvision's K logit channels are resbone's C = NUM_CLASSES - 1).
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
        "PIXEL_MEAN": list(IMAGENET_MEAN), "PIXEL_STD": list(IMAGENET_STD), "TO_BGR255": False,
    },
    "DATALOADER": {"SIZE_DIVISIBILITY": 32},
    "TEST": {"DETECTIONS_PER_IMG": 100},
}


def detector_cfg(overrides: Mapping[str, Any] | None = None) -> CN:
    """A fresh copy of every key with its default, with nested `overrides` applied, e.g.
    detector_cfg({"MODEL": {"BACKBONE": {"CONV_BODY": "R-50-FPN-RETINANET"}}}). An unknown key is a KeyError."""
    cfg = _C.clone()
    if overrides:
        _apply(cfg, overrides, prefix="")
    return cfg


def _apply(node: CN, overrides: Mapping[str, Any], *, prefix: str) -> None:
    for key, value in overrides.items():
        if key not in node:
            raise KeyError(f"unknown config key {prefix + key!r}; known keys here: {sorted(node)}")
        if isinstance(value, Mapping):
            _apply(node[key], value, prefix=f"{prefix}{key}.")
        else:
            node[key] = copy.deepcopy(value)


def require_keys(cfg: Mapping[str, Any], *names: str, reader: str) -> None:
    """Raise a KeyError naming the declared keys under `names` (sections like 'MODEL.RESNETS' or single keys)
    that `cfg` lacks: builders read keys, they never default them."""
    missing = []
    for name in names:
        declared = _C
        for part in name.split("."):
            declared = declared[part]
        keys = [f"{name}.{key}" for key in leaf_keys(declared)] if isinstance(declared, CN) else [name]
        missing += [key for key in keys if not _has(cfg, key)]
    if missing:
        raise KeyError(f"{reader} reads config keys the given config lacks: {', '.join(missing[:8])}"
                       f"{' ...' if len(missing) > 8 else ''}; start from resbone.detection.defaults.detector_cfg() "
                       f"(or resbone.detection.config.get_cfg()) and set your values in it")


def leaf_keys(node: CN, prefix: str = "") -> list[str]:
    """The dotted names of every value under `node` ('MODEL.FCOS.NUM_CLASSES' ...), in declaration order."""
    keys = []
    for key, value in node.items():
        keys += leaf_keys(value, f"{prefix}{key}.") if isinstance(value, CN) else [prefix + key]
    return keys


def _has(node: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
