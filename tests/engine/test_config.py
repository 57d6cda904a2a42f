"""The config: FCOS's defaults, FCOS's own YAML files loading unchanged, overrides, and every error."""
from __future__ import annotations

import os
import textwrap

import pytest

from resbone.engine.config import check_weight, get_cfg, load_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Copies of tianzhi0549/FCOS configs/fcos/*.yaml (comments trimmed), loaded as they are.
FCOS_R_50_FPN_1X = """
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  WEIGHT: "catalog://ImageNetPretrained/MSRA/R-50"
  RPN_ONLY: True
  FCOS_ON: True
  BACKBONE:
    CONV_BODY: "R-50-FPN-RETINANET"
  RESNETS:
    BACKBONE_OUT_CHANNELS: 256
  RETINANET:
    USE_C5: False # FCOS uses P5 instead of C5
DATASETS:
  TRAIN: ("coco_2014_train", "coco_2014_valminusminival")
  TEST: ("coco_2014_minival",)
INPUT:
  MIN_SIZE_TRAIN: (800,)
  MAX_SIZE_TRAIN: 1333
  MIN_SIZE_TEST: 800
  MAX_SIZE_TEST: 1333
DATALOADER:
  SIZE_DIVISIBILITY: 32
SOLVER:
  BASE_LR: 0.01
  WEIGHT_DECAY: 0.0001
  STEPS: (60000, 80000)
  MAX_ITER: 90000
  IMS_PER_BATCH: 16
  WARMUP_METHOD: "constant"
"""

FCOS_IMPRV_R_50_FPN_1X = FCOS_R_50_FPN_1X.replace("""    USE_C5: False # FCOS uses P5 instead of C5
""", """    USE_C5: False # FCOS uses P5 instead of C5
  FCOS:
    # normalizing the regression targets with FPN strides
    NORM_REG_TARGETS: True
    CENTERNESS_ON_REG: True
    CENTER_SAMPLING_RADIUS: 1.5
    IOU_LOSS_TYPE: "giou"
""")

FCOS_IMPRV_DCNV2_R_50_FPN_1X = FCOS_IMPRV_R_50_FPN_1X.replace("""    BACKBONE_OUT_CHANNELS: 256
""", """    BACKBONE_OUT_CHANNELS: 256
    STAGE_WITH_DCN: (False, True, True, True)
    WITH_MODULATED_DCN: True
    DEFORMABLE_GROUPS: 1
""").replace("""    IOU_LOSS_TYPE: "giou"
""", """    IOU_LOSS_TYPE: "giou"
    # we only use dcn in the last layer of towers
    USE_DCN_IN_TOWER: True
""")

FCOS_SYNCBN_BS32_C128_MS_MNV2_FPN_1X = """
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  WEIGHT: "https://cloudstor.aarnet.edu.au/plus/s/xtixKaxLWmbcyf7/download#mobilenet_v2-ecbe2b5.pth"
  RPN_ONLY: True
  FCOS_ON: True
  BACKBONE:
    CONV_BODY: "MNV2-FPN-RETINANET"
    FREEZE_CONV_BODY_AT: 0
  RESNETS:
    BACKBONE_OUT_CHANNELS: 128
  RETINANET:
    USE_C5: False # FCOS uses P5 instead of C5
  USE_SYNCBN: True
DATASETS:
  TRAIN: ("coco_2014_train", "coco_2014_valminusminival")
  TEST: ("coco_2014_minival",)
INPUT:
  MIN_SIZE_RANGE_TRAIN: (640, 800)
  MAX_SIZE_TRAIN: 1333
  MIN_SIZE_TEST: 800
  MAX_SIZE_TEST: 1333
DATALOADER:
  SIZE_DIVISIBILITY: 32
SOLVER:
  BASE_LR: 0.01
  WEIGHT_DECAY: 0.0001
  STEPS: (60000, 80000)
  MAX_ITER: 90000
  IMS_PER_BATCH: 32
  WARMUP_METHOD: "constant"
"""


def _write(tmp_path, text: str, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_are_fcos_values():
    """A sample of FCOS's fcos_core/config/defaults.py values, copied by hand."""
    cfg = get_cfg()
    assert cfg.MODEL.BACKBONE.CONV_BODY == "R-50-C4"
    assert cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT == 2
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True
    assert cfg.MODEL.RETINANET.USE_C5 is True
    assert cfg.MODEL.FCOS.NUM_CLASSES == 81 and cfg.MODEL.FCOS.FPN_STRIDES == [8, 16, 32, 64, 128]
    assert (cfg.MODEL.FCOS.PRIOR_PROB, cfg.MODEL.FCOS.INFERENCE_TH, cfg.MODEL.FCOS.NMS_TH) == (0.01, 0.05, 0.6)
    assert (cfg.MODEL.FCOS.LOSS_ALPHA, cfg.MODEL.FCOS.LOSS_GAMMA, cfg.MODEL.FCOS.NUM_CONVS) == (0.25, 2.0, 4)
    assert cfg.MODEL.FCOS.IOU_LOSS_TYPE == "iou" and cfg.MODEL.FCOS.USE_DCN_IN_TOWER is False
    assert cfg.INPUT.PIXEL_MEAN == [102.9801, 115.9465, 122.7717] and cfg.INPUT.TO_BGR255 is True
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800,) and cfg.INPUT.MAX_SIZE_TEST == 1333
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.BIAS_LR_FACTOR, cfg.SOLVER.WEIGHT_DECAY) == (0.001, 2, 0.0005)
    assert (cfg.SOLVER.WARMUP_FACTOR, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_METHOD) == (1 / 3, 500, "linear")
    assert cfg.SOLVER.STEPS == (30000,) and cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.TEST.IMS_PER_BATCH == 8
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.OUTPUT_DIR == "."
    assert cfg.TEST.BBOX_AUG.MAX_SIZE == 4000
    # the detection model's own additions are merged in
    assert "LOCATION_OFFSET" in cfg.MODEL.FCOS


@pytest.mark.parametrize("text", [FCOS_R_50_FPN_1X, FCOS_IMPRV_R_50_FPN_1X, FCOS_IMPRV_DCNV2_R_50_FPN_1X,
                                  FCOS_SYNCBN_BS32_C128_MS_MNV2_FPN_1X],
                         ids=["R_50_FPN_1x", "imprv_R_50_FPN_1x", "imprv_dcnv2_R_50_FPN_1x", "syncbn_MNV2"])
def test_fcos_config_files_load_unchanged(tmp_path, text):
    cfg = load_cfg(_write(tmp_path, text))
    assert cfg.MODEL.RETINANET.USE_C5 is False
    assert cfg.SOLVER.STEPS == (60000, 80000) and cfg.SOLVER.WARMUP_METHOD == "constant"
    assert cfg.DATASETS.TEST == ("coco_2014_minival",)
    assert cfg.DATALOADER.SIZE_DIVISIBILITY == 32
    if "dcnv2" in text or "STAGE_WITH_DCN" in text:
        assert cfg.MODEL.RESNETS.STAGE_WITH_DCN == (False, True, True, True)
        assert cfg.MODEL.FCOS.USE_DCN_IN_TOWER is True
    if "giou" in text:
        assert cfg.MODEL.FCOS.IOU_LOSS_TYPE == "giou" and cfg.MODEL.FCOS.CENTER_SAMPLING_RADIUS == 1.5
    if "MNV2" in text:
        assert cfg.INPUT.MIN_SIZE_RANGE_TRAIN == (640, 800) and cfg.MODEL.USE_SYNCBN is True
    # the catalog name / URL loads as text; using it is what fails (see test_catalog_weights_are_refused)
    assert "://" in cfg.MODEL.WEIGHT


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(REPO, "configs", "fcos"))))
def test_shipped_configs_load(name):
    cfg = load_cfg(os.path.join(REPO, "configs", "fcos", name))
    assert cfg.MODEL.FCOS_ON


def test_overrides_parse_like_yaml():
    cfg = load_cfg(None, ["SOLVER.MAX_ITER", "200", "SOLVER.BASE_LR", "1", "DATASETS.TRAIN", "('a', 'b')",
                          "MODEL.WEIGHT", "", "INPUT.MIN_SIZE_TRAIN", "640", "MODEL.FCOS.CENTERNESS_ON_REG", "True"])
    assert cfg.SOLVER.MAX_ITER == 200 and cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.DATASETS.TRAIN == ("a", "b") and cfg.MODEL.WEIGHT == ""
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640,) and cfg.MODEL.FCOS.CENTERNESS_ON_REG is True
    assert cfg.is_frozen()


def test_base_inheritance(tmp_path):
    _write(tmp_path, "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 10\n", "base.yaml")
    cfg = load_cfg(_write(tmp_path, "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 20\n"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (0.5, 20)


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path):
    path = _write(tmp_path, "MODEL:\n  FCOS:\n    NUM_CLASES: 3\n")
    with pytest.raises(KeyError, match=r"MODEL\.FCOS\.NUM_CLASES.*cfg\.yaml.*MODEL\.FCOS\.NUM_CLASSES"):
        load_cfg(path)


def test_unknown_key_on_command_line():
    with pytest.raises(KeyError, match=r"SOLVER\.MAX_ITERS.*command line.*SOLVER\.MAX_ITER"):
        load_cfg(None, ["SOLVER.MAX_ITERS", "10"])


@pytest.mark.parametrize("opts, error, pattern", [
    (["SOLVER.MAX_ITER", "abc"], TypeError, r"SOLVER\.MAX_ITER.*an integer.*'abc'"),
    (["MODEL.FCOS.CENTERNESS_ON_REG", "1"], TypeError, r"CENTERNESS_ON_REG.*a boolean"),
    (["MODEL.BACKBONE.CONV_BODY", "3"], TypeError, r"CONV_BODY.*a string"),
    (["SOLVER", "3"], TypeError, r"SOLVER.*is a section"),
    (["SOLVER.MAX_ITER"], ValueError, r"KEY VALUE pairs"),
    (["SOLVER.WARMUP_METHOD", "cosine"], ValueError, r"WARMUP_METHOD must be one of 'constant', 'linear'.*cosine"),
    (["MODEL.FCOS.IOU_LOSS_TYPE", "diou"], ValueError, r"IOU_LOSS_TYPE must be one of.*giou"),
    (["SOLVER.STEPS", "(5, 2)"], ValueError, r"STEPS must be increasing"),
    (["SOLVER.IMS_PER_BATCH", "0"], ValueError, r"IMS_PER_BATCH must be positive"),
    # these two used to crash later: `done % 0` in the training loop, DataLoader(batch_size=0) in eval
    (["SOLVER.LOG_PERIOD", "0"], ValueError, r"SOLVER\.LOG_PERIOD must be positive, got 0"),
    (["TEST.IMS_PER_BATCH", "0"], ValueError, r"TEST\.IMS_PER_BATCH must be positive, got 0"),
])
def test_bad_overrides_raise_a_sentence(opts, error, pattern):
    """Wrong types are TypeErrors, wrong values ValueErrors; each names the key and what is allowed."""
    with pytest.raises(error, match=pattern):
        load_cfg(None, opts)


def test_bad_type_in_file(tmp_path):
    with pytest.raises(TypeError, match=r"SOLVER\.STEPS.*cfg\.yaml.*tuple"):
        load_cfg(_write(tmp_path, "SOLVER:\n  STEPS: abc\n"))
    with pytest.raises(TypeError, match=r"SOLVER\.STEPS.*cfg\.yaml.*not a section"):
        load_cfg(_write(tmp_path, "SOLVER:\n  STEPS: {a: 1}\n"))


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_cfg(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_cfg(_write(tmp_path, "MODEL: [unclosed\n", "bad.yaml"))
    with pytest.raises(ValueError, match="includes itself"):
        load_cfg(_write(tmp_path, "_BASE_: loop.yaml\n", "loop.yaml"))


@pytest.mark.parametrize("weight", ["catalog://ImageNetPretrained/MSRA/R-50",
                                    "https://cloudstor.aarnet.edu.au/plus/s/x/download#mobilenet_v2.pth"])
def test_catalog_weights_are_refused(weight):
    with pytest.raises(ValueError, match=r"download the file yourself and pass its local path"):
        check_weight(weight)


def test_missing_local_weight(tmp_path):
    assert check_weight("") == ""
    with pytest.raises(ValueError, match="does not exist"):
        check_weight(str(tmp_path / "nope.pth"))


def test_directory_as_weight_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory; pass the path of a checkpoint file in it"):
        check_weight(str(tmp_path))
