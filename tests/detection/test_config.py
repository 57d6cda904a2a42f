"""The config: every shipped config builds torchvision's FCOS, FCOS's own YAML files load unchanged, overrides
(also through yacs's own merge methods), and every error names its key."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from resbone.detection.config import get_cfg, load_cfg
from resbone.detection.defaults import detector_cfg
from resbone.detection.detector import build_detector
from resbone.engine.config import CfgNode, check_weight

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
    # the catalog name / URL loads as text and is fetched when loaded (tests/weights/test_fcos_weight.py)
    assert "://" in cfg.MODEL.WEIGHT


SHIPPED = sorted(str(p.relative_to(REPO)) for p in Path(REPO, "resbone", "configs", "fcos").rglob("*.yaml"))


def _torchvision_fcos(cfg) -> nn.Module:
    """torchvision's FCOS built like `cfg` (body depth and norm, FPN width and P6 input, tower depth, classes)."""
    model = cfg.MODEL
    body = model.BACKBONE.CONV_BODY
    assert body.endswith("-FPN-RETINANET") and body.startswith("R-") and model.RESNETS.NUM_GROUPS == 1, body
    assert not any(model.RESNETS.STAGE_WITH_DCN) and not model.FCOS.USE_DCN_IN_TOWER, "extend this reference"
    gn = model.RESNETS.TRANS_FUNC == "BottleneckWithGN"
    norm = (lambda c: nn.GroupNorm(32, c)) if gn else FrozenBatchNorm2d
    width, stem = model.RESNETS.RES2_OUT_CHANNELS, model.RESNETS.STEM_OUT_CHANNELS
    if (width, stem) == (64, 64) or body.split("-")[1] not in ("18", "34"):
        resnet = getattr(torchvision.models, f"resnet{body.split('-')[1]}")(norm_layer=norm)
    else:  # a narrower R-18/34 body: timm's ResNet has the widths (channels=), its stem is made as wide
        pytest.importorskip("timm")
        from bench.fcos import timm_basic_resnet

        layers = [2, 2, 2, 2] if body.split("-")[1] == "18" else [3, 4, 6, 3]
        resnet = timm_basic_resnet(layers, width, stem, norm)
    in_channels = [c * type(resnet.layer4[0]).expansion for c in (resnet.layer2[0].conv1.out_channels,
                                                                  resnet.layer3[0].conv1.out_channels,
                                                                  resnet.layer4[0].conv1.out_channels)]
    width = model.RESNETS.BACKBONE_OUT_CHANNELS
    p6_input = in_channels[-1] if model.RETINANET.USE_C5 else width
    fpn = BackboneWithFPN(resnet, {"layer2": "0", "layer3": "1", "layer4": "2"}, in_channels, width,
                          extra_blocks=LastLevelP6P7(p6_input, width))
    head = FCOSHead(width, 1, model.FCOS.NUM_CLASSES - 1, num_convs=model.FCOS.NUM_CONVS)
    return FCOS(fpn, model.FCOS.NUM_CLASSES - 1, head=head)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_builds_the_detector_torchvision_builds(name):
    """Each configs/ file builds a detector with torchvision's FCOS parameter count (plus FCOS's one learnable
    Scale per level, which torchvision's FCOS lacks) and, on a 64 px batch, one map per stride 8..128."""
    cfg = load_cfg(os.path.join(REPO, name))
    torch.manual_seed(0)
    ours = build_detector(cfg).eval()
    strides = list(cfg.MODEL.FCOS.FPN_STRIDES)
    assert [i["stride"] for i in ours.backbone.feature_info] == [8, 16, 32] and strides == [8, 16, 32, 64, 128]
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in _torchvision_fcos(cfg).parameters()) + len(strides)
    with torch.no_grad():
        logits, regression, centerness = ours.forward_network(torch.rand(1, 3, 64, 64))
    sizes = [(-(-64 // s), -(-64 // s)) for s in strides]
    assert [tuple(o.shape) for o in logits] == [(1, cfg.MODEL.FCOS.NUM_CLASSES - 1, *hw) for hw in sizes]
    assert [tuple(o.shape[1:]) for o in regression] == [(4, *hw) for hw in sizes]
    assert [tuple(o.shape[1:]) for o in centerness] == [(1, *hw) for hw in sizes]


def test_the_engine_and_the_detector_share_one_declaration():
    """get_cfg() (the engine's) and detector_cfg() (the detector's) describe the same model, key for key."""
    assert get_cfg().dump() == detector_cfg().dump()
    assert isinstance(get_cfg(), CfgNode) and get_cfg() is not get_cfg()


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
    # the solver's numbers (issue 10): each used to reach torch.optim or the schedule unchecked
    (["SOLVER.BASE_LR", "0"], ValueError, r"SOLVER\.BASE_LR must be positive, got 0\.0"),
    (["SOLVER.BASE_LR", "-0.01"], ValueError, r"SOLVER\.BASE_LR must be positive, got -0\.01"),
    (["SOLVER.MOMENTUM", "1.0"], ValueError, r"SOLVER\.MOMENTUM must be >= 0 and < 1, got 1\.0"),
    (["SOLVER.WEIGHT_DECAY", "-1e-4"], ValueError, r"SOLVER\.WEIGHT_DECAY must be >= 0, got -0\.0001"),
    (["SOLVER.WEIGHT_DECAY_BIAS", "-1.0"], ValueError, r"SOLVER\.WEIGHT_DECAY_BIAS must be >= 0"),
    (["SOLVER.GAMMA", "10"], ValueError, r"SOLVER\.GAMMA must be > 0 and <= 1, got 10\.0"),
    (["SOLVER.WARMUP_FACTOR", "0"], ValueError, r"SOLVER\.WARMUP_FACTOR must be > 0 and <= 1, got 0\.0"),
    (["SOLVER.WARMUP_ITERS", "-1"], ValueError, r"SOLVER\.WARMUP_ITERS must be >= 0, got -1"),
    (["SOLVER.CLIP_GRAD_NORM", "-1"], ValueError, r"SOLVER\.CLIP_GRAD_NORM must be >= 0, got -1\.0"),
    (["SOLVER.STEPS", "(0, 5)"], ValueError, r"SOLVER\.STEPS must be positive iteration numbers.*\(0, 5\)"),
    (["SOLVER.STEPS", "('a',)"], ValueError, r"SOLVER\.STEPS must be positive iteration numbers"),
    (["SOLVER.AMP_DTYPE", "fp16"], ValueError, r"SOLVER\.AMP_DTYPE must be one of 'auto', 'bfloat16', 'float16'"),
    (["INPUT.HORIZONTAL_FLIP_PROB_TRAIN", "1.5"], ValueError, r"HORIZONTAL_FLIP_PROB_TRAIN must be >= 0 and <= 1"),
])
def test_bad_overrides_raise_a_sentence(opts, error, pattern):
    """Wrong types are TypeErrors, wrong values ValueErrors; each names the key and what is allowed."""
    with pytest.raises(error, match=pattern):
        load_cfg(None, opts)


def test_nan_in_a_file_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"SOLVER\.BASE_LR must be positive, got nan"):
        load_cfg(_write(tmp_path, "SOLVER:\n  BASE_LR: .nan\n"))


def test_steps_beyond_max_iter_warn_that_the_lr_never_decays():
    """As detectron2: a run shortened with SOLVER.MAX_ITER on the command line keeps its file's STEPS."""
    with pytest.warns(UserWarning, match=r"SOLVER\.STEPS \(300,\) are not below SOLVER\.MAX_ITER 200"):
        load_cfg(None, ["SOLVER.STEPS", "(100, 300)", "SOLVER.MAX_ITER", "200"])


def test_yacs_merge_methods_give_resbones_errors(tmp_path):
    """README's own example uses yacs's `cfg.merge_from_list`; a typo there was yacs's bare AssertionError."""
    cfg = get_cfg()
    with pytest.raises(KeyError, match=r"MODEL\.BACKBONE\.CONV_BOD .*command line.*did you mean "
                                       r"MODEL\.BACKBONE\.CONV_BODY"):
        cfg.merge_from_list(["MODEL.BACKBONE.CONV_BOD", "R-50-FPN-RETINANET"])
    cfg.merge_from_list(["MODEL.BACKBONE.CONV_BODY", "R-50-FPN-RETINANET", "SOLVER.BASE_LR", "1"])
    assert cfg.MODEL.BACKBONE.CONV_BODY == "R-50-FPN-RETINANET" and cfg.SOLVER.BASE_LR == 1.0
    with pytest.raises(TypeError, match=r"SOLVER\.STEPS.*cfg\.yaml.*tuple"):
        cfg.merge_from_file(_write(tmp_path, "SOLVER:\n  STEPS: abc\n"))
    cfg.merge_from_other_cfg(CfgNode({"MODEL": {"FCOS": {"NUM_CLASSES": 4}}}))
    assert cfg.MODEL.FCOS.NUM_CLASSES == 4
    cfg.freeze()
    with pytest.raises(AttributeError, match="frozen"):
        cfg.merge_from_list(["SOLVER.BASE_LR", "2"])


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
                                    "https://cloudstor.aarnet.edu.au/plus/s/x/download/mobilenet_v2.pth"])
def test_catalog_names_and_urls_are_accepted_without_a_download(weight):
    assert check_weight(weight) == weight  # fetched when loaded (tests/weights/test_fcos_weight.py)


def test_unknown_catalog_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"catalog://ImageNetPretrained/MSRA/R-101"):
        check_weight("catalog://ImageNetPretrained/MSRA/R-999")


def test_missing_local_weight(tmp_path):
    assert check_weight("") == ""
    with pytest.raises(ValueError, match="does not exist"):
        check_weight(str(tmp_path / "nope.pth"))


def test_directory_as_weight_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory; pass the path of a checkpoint file in it"):
        check_weight(str(tmp_path))
