"""FCOS's configuration, yacs-style: defaults, YAML files and `KEY VALUE` overrides.

Anchor: tianzhi0549/FCOS `fcos_core/config/defaults.py` (itself maskrcnn-benchmark's). Every key and
default value of that file is here, so FCOS's own `configs/fcos/*.yaml` load unchanged; resbone's
additions are marked below. The detection developer's `resbone.detection.defaults` may add more keys
(merged in by `get_cfg`). Unlike yacs, an unknown key or a value of the wrong type raises an error that
names the key, the file and what is allowed. Proven by tests/engine/test_config.py.
"""
from __future__ import annotations

import ast
import difflib
import os
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from resbone.detection.data.shapes import SHAPES_DEFAULTS

__all__ = ["CN", "get_cfg", "load_cfg", "merge_from_file", "merge_from_list", "check_weight"]


def _fcos_defaults() -> CN:
    _C = CN()

    _C.MODEL = CN()
    _C.MODEL.RPN_ONLY = False
    _C.MODEL.MASK_ON = False
    _C.MODEL.FCOS_ON = True
    _C.MODEL.RETINANET_ON = False
    _C.MODEL.KEYPOINT_ON = False
    _C.MODEL.DEVICE = "cuda"
    _C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    _C.MODEL.CLS_AGNOSTIC_BBOX_REG = False
    # A local file; FCOS's `catalog://` names and URLs are refused by check_weight (no network here).
    _C.MODEL.WEIGHT = ""
    _C.MODEL.USE_SYNCBN = False

    _C.INPUT = CN()
    _C.INPUT.MIN_SIZE_TRAIN = (800,)
    _C.INPUT.MIN_SIZE_RANGE_TRAIN = (-1, -1)
    _C.INPUT.MAX_SIZE_TRAIN = 1333
    _C.INPUT.MIN_SIZE_TEST = 800
    _C.INPUT.MAX_SIZE_TEST = 1333
    _C.INPUT.PIXEL_MEAN = [102.9801, 115.9465, 122.7717]
    _C.INPUT.PIXEL_STD = [1., 1., 1.]
    _C.INPUT.TO_BGR255 = True

    _C.DATASETS = CN()
    _C.DATASETS.TRAIN = ()
    _C.DATASETS.TEST = ()

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 4
    _C.DATALOADER.SIZE_DIVISIBILITY = 0
    _C.DATALOADER.ASPECT_RATIO_GROUPING = True

    _C.MODEL.BACKBONE = CN()
    _C.MODEL.BACKBONE.CONV_BODY = "R-50-C4"
    _C.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 2
    _C.MODEL.BACKBONE.USE_GN = False

    _C.MODEL.FPN = CN()
    _C.MODEL.FPN.USE_GN = False
    _C.MODEL.FPN.USE_RELU = False

    _C.MODEL.GROUP_NORM = CN()
    _C.MODEL.GROUP_NORM.DIM_PER_GP = -1
    _C.MODEL.GROUP_NORM.NUM_GROUPS = 32
    _C.MODEL.GROUP_NORM.EPSILON = 1e-5

    _C.MODEL.RPN = CN()
    _C.MODEL.RPN.USE_FPN = False
    _C.MODEL.RPN.ANCHOR_SIZES = (32, 64, 128, 256, 512)
    _C.MODEL.RPN.ANCHOR_STRIDE = (16,)
    _C.MODEL.RPN.ASPECT_RATIOS = (0.5, 1.0, 2.0)
    _C.MODEL.RPN.STRADDLE_THRESH = 0
    _C.MODEL.RPN.FG_IOU_THRESHOLD = 0.7
    _C.MODEL.RPN.BG_IOU_THRESHOLD = 0.3
    _C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
    _C.MODEL.RPN.POSITIVE_FRACTION = 0.5
    _C.MODEL.RPN.PRE_NMS_TOP_N_TRAIN = 12000
    _C.MODEL.RPN.PRE_NMS_TOP_N_TEST = 6000
    _C.MODEL.RPN.POST_NMS_TOP_N_TRAIN = 2000
    _C.MODEL.RPN.POST_NMS_TOP_N_TEST = 1000
    _C.MODEL.RPN.NMS_THRESH = 0.7
    _C.MODEL.RPN.MIN_SIZE = 0
    _C.MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN = 2000
    _C.MODEL.RPN.FPN_POST_NMS_TOP_N_TEST = 2000
    _C.MODEL.RPN.RPN_HEAD = "SingleConvRPNHead"

    _C.MODEL.ROI_HEADS = CN()
    _C.MODEL.ROI_HEADS.USE_FPN = False
    _C.MODEL.ROI_HEADS.FG_IOU_THRESHOLD = 0.5
    _C.MODEL.ROI_HEADS.BG_IOU_THRESHOLD = 0.5
    _C.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS = (10., 10., 5., 5.)
    _C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    _C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
    _C.MODEL.ROI_HEADS.SCORE_THRESH = 0.05
    _C.MODEL.ROI_HEADS.NMS = 0.5
    _C.MODEL.ROI_HEADS.DETECTIONS_PER_IMG = 100

    _C.MODEL.ROI_BOX_HEAD = CN()
    _C.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"
    _C.MODEL.ROI_BOX_HEAD.PREDICTOR = "FastRCNNPredictor"
    _C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_BOX_HEAD.POOLER_SCALES = (1.0 / 16,)
    _C.MODEL.ROI_BOX_HEAD.NUM_CLASSES = 81
    _C.MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM = 1024
    _C.MODEL.ROI_BOX_HEAD.USE_GN = False
    _C.MODEL.ROI_BOX_HEAD.DILATION = 1
    _C.MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM = 256
    _C.MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS = 4

    _C.MODEL.ROI_MASK_HEAD = CN()
    _C.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"
    _C.MODEL.ROI_MASK_HEAD.PREDICTOR = "MaskRCNNC4Predictor"
    _C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_MASK_HEAD.POOLER_SCALES = (1.0 / 16,)
    _C.MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM = 1024
    _C.MODEL.ROI_MASK_HEAD.CONV_LAYERS = (256, 256, 256, 256)
    _C.MODEL.ROI_MASK_HEAD.RESOLUTION = 14
    _C.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True
    _C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS = False
    _C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD = 0.5
    _C.MODEL.ROI_MASK_HEAD.DILATION = 1
    _C.MODEL.ROI_MASK_HEAD.USE_GN = False

    _C.MODEL.ROI_KEYPOINT_HEAD = CN()
    _C.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR = "KeypointRCNNFeatureExtractor"
    _C.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR = "KeypointRCNNPredictor"
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES = (1.0 / 16,)
    _C.MODEL.ROI_KEYPOINT_HEAD.MLP_HEAD_DIM = 1024
    _C.MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS = tuple(512 for _ in range(8))
    _C.MODEL.ROI_KEYPOINT_HEAD.RESOLUTION = 14
    _C.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES = 17
    _C.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True

    _C.MODEL.RESNETS = CN()
    _C.MODEL.RESNETS.NUM_GROUPS = 1
    _C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
    _C.MODEL.RESNETS.STRIDE_IN_1X1 = True
    _C.MODEL.RESNETS.TRANS_FUNC = "BottleneckWithFixedBatchNorm"
    _C.MODEL.RESNETS.STEM_FUNC = "StemWithFixedBatchNorm"
    _C.MODEL.RESNETS.RES5_DILATION = 1
    _C.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256 * 4
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
    _C.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 0.0
    _C.MODEL.FCOS.IOU_LOSS_TYPE = "iou"
    _C.MODEL.FCOS.NORM_REG_TARGETS = False
    _C.MODEL.FCOS.CENTERNESS_ON_REG = False
    _C.MODEL.FCOS.USE_DCN_IN_TOWER = False

    _C.MODEL.RETINANET = CN()
    _C.MODEL.RETINANET.NUM_CLASSES = 81
    _C.MODEL.RETINANET.ANCHOR_SIZES = (32, 64, 128, 256, 512)
    _C.MODEL.RETINANET.ASPECT_RATIOS = (0.5, 1.0, 2.0)
    _C.MODEL.RETINANET.ANCHOR_STRIDES = (8, 16, 32, 64, 128)
    _C.MODEL.RETINANET.STRADDLE_THRESH = 0
    _C.MODEL.RETINANET.OCTAVE = 2.0
    _C.MODEL.RETINANET.SCALES_PER_OCTAVE = 3
    _C.MODEL.RETINANET.USE_C5 = True
    _C.MODEL.RETINANET.NUM_CONVS = 4
    _C.MODEL.RETINANET.BBOX_REG_WEIGHT = 4.0
    _C.MODEL.RETINANET.BBOX_REG_BETA = 0.11
    _C.MODEL.RETINANET.PRE_NMS_TOP_N = 1000
    _C.MODEL.RETINANET.FG_IOU_THRESHOLD = 0.5
    _C.MODEL.RETINANET.BG_IOU_THRESHOLD = 0.4
    _C.MODEL.RETINANET.LOSS_ALPHA = 0.25
    _C.MODEL.RETINANET.LOSS_GAMMA = 2.0
    _C.MODEL.RETINANET.PRIOR_PROB = 0.01
    _C.MODEL.RETINANET.INFERENCE_TH = 0.05
    _C.MODEL.RETINANET.NMS_TH = 0.4

    _C.MODEL.FBNET = CN()
    _C.MODEL.FBNET.ARCH = "default"
    _C.MODEL.FBNET.ARCH_DEF = ""
    _C.MODEL.FBNET.BN_TYPE = "bn"
    _C.MODEL.FBNET.SCALE_FACTOR = 1.0
    _C.MODEL.FBNET.WIDTH_DIVISOR = 1
    _C.MODEL.FBNET.DW_CONV_SKIP_BN = True
    _C.MODEL.FBNET.DW_CONV_SKIP_RELU = True
    _C.MODEL.FBNET.DET_HEAD_LAST_SCALE = 1.0
    _C.MODEL.FBNET.DET_HEAD_BLOCKS = []
    _C.MODEL.FBNET.DET_HEAD_STRIDE = 0
    _C.MODEL.FBNET.KPTS_HEAD_LAST_SCALE = 0.0
    _C.MODEL.FBNET.KPTS_HEAD_BLOCKS = []
    _C.MODEL.FBNET.KPTS_HEAD_STRIDE = 0
    _C.MODEL.FBNET.MASK_HEAD_LAST_SCALE = 0.0
    _C.MODEL.FBNET.MASK_HEAD_BLOCKS = []
    _C.MODEL.FBNET.MASK_HEAD_STRIDE = 0
    _C.MODEL.FBNET.RPN_HEAD_BLOCKS = 0
    _C.MODEL.FBNET.RPN_BN_TYPE = ""

    _C.SOLVER = CN()
    _C.SOLVER.MAX_ITER = 40000
    _C.SOLVER.BASE_LR = 0.001
    # FCOS writes 2 and 0 (ints); stored as floats so that `WEIGHT_DECAY_BIAS 1e-4` is not a type error
    _C.SOLVER.BIAS_LR_FACTOR = 2.0
    _C.SOLVER.DCONV_OFFSETS_LR_FACTOR = 1.0
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.WEIGHT_DECAY = 0.0005
    _C.SOLVER.WEIGHT_DECAY_BIAS = 0.0
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.STEPS = (30000,)
    _C.SOLVER.WARMUP_FACTOR = 1.0 / 3
    _C.SOLVER.WARMUP_ITERS = 500
    _C.SOLVER.WARMUP_METHOD = "linear"
    _C.SOLVER.CHECKPOINT_PERIOD = 2500
    _C.SOLVER.IMS_PER_BATCH = 16  # global: split over the processes

    _C.TEST = CN()
    _C.TEST.EXPECTED_RESULTS = []
    _C.TEST.EXPECTED_RESULTS_SIGMA_TOL = 4
    _C.TEST.IMS_PER_BATCH = 8
    _C.TEST.DETECTIONS_PER_IMG = 100
    _C.TEST.BBOX_AUG = CN()
    _C.TEST.BBOX_AUG.ENABLED = False
    _C.TEST.BBOX_AUG.H_FLIP = False
    _C.TEST.BBOX_AUG.SCALES = ()
    _C.TEST.BBOX_AUG.MAX_SIZE = 4000
    _C.TEST.BBOX_AUG.SCALE_H_FLIP = False

    _C.OUTPUT_DIR = "."
    # FCOS points this at its paths_catalog.py; resbone's catalog is resbone.detection.data.catalog.
    _C.PATHS_CATALOG = ""
    return _C


def _add_resbone_defaults(_C: CN) -> None:
    """Keys FCOS does not have (the engine's knobs and the synthetic data set)."""
    _C.SEED = 0
    _C.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5
    # Root of the data sets; "" -> $RESBONE_DATA, else ./datasets.
    _C.DATASETS.ROOT = ""
    # The built-in `shapes_train` / `shapes_val` sets are generated on first use with these settings.
    _C.DATASETS.SHAPES = CN({key.upper(): value for key, value in SHAPES_DEFAULTS.items()})
    _C.SOLVER.AMP = False
    _C.SOLVER.CLIP_GRAD_NORM = 0.0  # 0 = no clipping
    _C.SOLVER.LOG_PERIOD = 20
    _C.SOLVER.TEST_AFTER_TRAIN = True
    _C.SOLVER.PROGRESS_BAR = True


def get_cfg() -> CN:
    """A fresh copy of the defaults: FCOS's, resbone's additions, then the detection model's extras."""
    cfg = _fcos_defaults()
    _add_resbone_defaults(cfg)
    try:
        from resbone.detection import defaults as detection_defaults
    except ImportError:
        detection_defaults = None
    if detection_defaults is not None:
        for name in ("add_fcos_config", "add_detection_defaults", "add_defaults"):
            if hasattr(detection_defaults, name):
                getattr(detection_defaults, name)(cfg)
                break
    return cfg


# ---- merging with checks ------------------------------------------------------------------------------
def _decode(value: Any) -> Any:
    """YAML / command-line text -> Python value, as yacs does: '(800,)' is a tuple, 'R-50' stays a str."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            tuple: "a tuple/list", list: "a tuple/list"}.get(type(value), type(value).__name__)


def _coerce(new: Any, old: Any, key: str, where: str) -> Any:
    """Check that `new` may replace the default `old` (yacs's rules, with an error that explains)."""
    if old is None or type(new) is type(old):
        return new
    if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return type(old)(new)
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    if isinstance(old, (tuple, list)) and not isinstance(new, (tuple, list, dict, CN)) and new is not None:
        # FCOS writes `MIN_SIZE_TRAIN: 800` and `(800,)` interchangeably in its forks.
        element = type(old[0]) if len(old) else type(new)
        if element is type(new) or (element is float and type(new) is int):
            return type(old)([element(new)])
    raise TypeError(f"config key {key}{where} must be {_type_name(old)} like {old!r}, got {new!r} "
                    f"({_type_name(new)})")


def _merge(dst: CN, src: dict, prefix: str, where: str) -> None:
    for name, raw in src.items():
        key = f"{prefix}{name}"
        if name not in dst:
            close = difflib.get_close_matches(name, list(dst.keys()), n=3)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise KeyError(f"unknown config key {key}{where}{hint} (keys under "
                           f"{prefix.rstrip('.') or 'the root'}: {', '.join(sorted(dst.keys()))})")
        value = _decode(raw)
        if isinstance(dst[name], CN):
            if not isinstance(value, dict):
                raise TypeError(f"config key {key}{where} is a section with keys "
                                f"{', '.join(sorted(dst[name].keys()))}; got the value {raw!r}")
            _merge(dst[name], value, key + ".", where)
        elif isinstance(value, dict):
            raise TypeError(f"config key {key}{where} is a value like {dst[name]!r}, not a section")
        else:
            dst[name] = _coerce(value, dst[name], key, where)


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    path = os.path.abspath(path)
    if path in seen:
        raise ValueError(f"config file {path} includes itself through _BASE_ ({' -> '.join(seen)})")
    if not os.path.isfile(path):
        raise ValueError(f"config file {path} does not exist")
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise TypeError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    # detectron2-style inheritance: the base file first, then this file's keys over it.
    merged = _read_yaml(os.path.join(os.path.dirname(path), base), seen + (path,))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = value


def merge_from_file(cfg: CN, path: str) -> CN:
    """Merge a YAML file (FCOS's or resbone's; `_BASE_: other.yaml` inherits) into cfg."""
    _merge(cfg, _read_yaml(path), "", f" (in {path})")
    return cfg


def merge_from_list(cfg: CN, opts: Sequence[str]) -> CN:
    """Merge `KEY VALUE` pairs (`SOLVER.MAX_ITER 200 MODEL.WEIGHT ''`), values parsed like YAML's."""
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"overrides come as KEY VALUE pairs; got an odd number of items: {opts}")
    for key, value in zip(opts[0::2], opts[1::2]):
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise ValueError(f"override key {key!r} is not a config key like SOLVER.MAX_ITER")
        *parents, last = key.split(".")
        tree: dict = {}
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        _merge(cfg, tree, "", " (on the command line)")
    return cfg


def load_cfg(path: str | None = None, opts: Iterable[str] = (), *, freeze: bool = True) -> CN:
    """get_cfg() + the YAML file + the overrides, checked and (by default) frozen."""
    cfg = get_cfg()
    if path:
        merge_from_file(cfg, path)
    merge_from_list(cfg, list(opts))
    check_cfg(cfg)
    if freeze:
        cfg.freeze()
    return cfg


_ALLOWED = {
    "SOLVER.WARMUP_METHOD": ("constant", "linear"),
    "MODEL.FCOS.IOU_LOSS_TYPE": ("iou", "linear_iou", "giou"),
}


def check_cfg(cfg: CN) -> None:
    """Values whose set of allowed choices is known here; the rest is checked where it is used."""
    for key, allowed in _ALLOWED.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, allowed))}, got {node!r}")
    steps = list(cfg.SOLVER.STEPS)
    if steps != sorted(steps):
        raise ValueError(f"SOLVER.STEPS must be increasing, got {tuple(steps)}")
    for key in ("SOLVER.MAX_ITER", "SOLVER.IMS_PER_BATCH", "SOLVER.CHECKPOINT_PERIOD", "SOLVER.LOG_PERIOD",
                "TEST.IMS_PER_BATCH"):
        section, name = key.split(".")
        if cfg[section][name] <= 0:
            raise ValueError(f"{key} must be positive, got {cfg[section][name]}")


def check_weight(weight: str) -> str:
    """MODEL.WEIGHT must be "" or a local file: FCOS's catalog:// names and URLs need a download first."""
    if not weight:
        return weight
    if weight.startswith("catalog://") or "://" in weight:
        raise ValueError(
            f"MODEL.WEIGHT {weight!r} is a catalog name or URL and resbone never downloads: download the "
            "file yourself and pass its local path (`MODEL.WEIGHT /path/to/R-50.pkl`), or train from "
            "scratch with `MODEL.WEIGHT ''`")
    if os.path.isdir(weight):
        raise ValueError(f"MODEL.WEIGHT {weight!r} is a directory; pass the path of a checkpoint file in it")
    if not os.path.isfile(weight):
        raise ValueError(f"MODEL.WEIGHT {weight!r} does not exist; pass the path of a local checkpoint file")
    return weight
