"""Every dialect round-trips bit-exactly for every architecture it holds, writes the names its
ecosystem uses (checked against the key lists in DESIGN.md "Facts from the ecosystems" and the
ecosystems' sources), and is recognised by detect_dialect; what a dialect cannot express is refused."""
from __future__ import annotations

import pytest
import torch

from resbone.convert import DIALECTS, convert_state_dict, detect_dialect, fcos_from_torchvision, fcos_to_torchvision
from tests.helpers.checkpoints import BUILDERS, EPS, assert_identical, random_state_dict

COVERS = {
    "torchvision": ["plain18", "plain50", "resnext", "mobilenet_v2", "fcos"],
    "timm": ["plain18", "plain50", "deep_stem", "deep_stem_avg_down", "resnext", "se", "mobilenet_v2"],
    "mmdet": ["plain18", "plain50", "deep_stem", "deep_stem_avg_down", "resnext", "gn", "frozen_bn", "dcn", "ibn",
              "mobilenet_v2_backbone", "fcos", "fcos_gn_p6", "fcos_dcn_head"],
    "mmpretrain": ["plain18", "plain50", "deep_stem", "deep_stem_avg_down", "resnext", "gn", "se", "mobilenet_v2"],
    "detectron2": ["plain18", "plain50", "deep_stem", "resnext", "gn", "frozen_bn", "dcn", "fcos", "fcos_gn_p6"],
    "maskrcnn": ["frozen_bn", "frozen_bn18", "gn", "dcn_frozen_bn", "mobilenet_v2_fcos", "fcos_frozen_bn",
                 "fcos_dcn_head"],
    "caffe2": ["frozen_bn", "frozen_bn18", "gn"],
    "pretrainedmodels": ["plain50", "se", "deep_stem"],
    "torchreid": ["plain18", "plain50", "se", "ibn", "torchreid_fc512"],
    "fastreid": ["plain50", "ibn", "se_linear_ibn", "fastreid_whole"],
}
CASES = [(d, a) for d, archs in COVERS.items() for a in archs]


def _native(dialect: str, arch: str) -> dict:
    return random_state_dict(arch, affine_norms=dialect == "caffe2", unit_scales=dialect == "torchvision")


@pytest.mark.parametrize("dialect,arch", CASES, ids=[f"{d}-{a}" for d, a in CASES])
def test_round_trip_is_bit_exact_and_auto_detected(dialect, arch):
    """resbone -> dialect -> resbone and dialect -> resbone -> dialect give identical state dicts, and
    reading the dialect's dict with src='auto' gives the same native dict (detection is right)."""
    native = _native(dialect, arch)
    theirs = convert_state_dict(native, "resbone", dialect)
    assert_identical(convert_state_dict(theirs, dialect, "resbone"), native)
    assert_identical(convert_state_dict(convert_state_dict(theirs, dialect, "resbone"), "resbone", dialect), theirs)
    assert_identical(convert_state_dict(theirs, "auto", "resbone"), native)


def test_every_dialect_is_covered():
    assert set(COVERS) == set(DIALECTS) - {"resbone"}


def _keys(dialect: str, arch: str, **options) -> dict:
    return convert_state_dict(_native(dialect, arch), "resbone", dialect, **options)


def test_detectron2_names():
    """DESIGN: stem.conv1(.norm), res2..res5, convK.norm, shortcut(.norm), conv2_offset, linear;
    detector: backbone.bottom_up., fpn_lateral3..5, fpn_output3..5, top_block.p6/p7, AdelaiDet head."""
    keys = _keys("detectron2", "dcn")
    for key in ["stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv1.norm.weight",
                "res2.0.shortcut.weight", "res2.0.shortcut.norm.bias", "res5.0.conv3.norm.weight",
                "res3.0.conv2_offset.weight", "res3.0.conv2.weight"]:
        assert key in keys, key
    assert not any(k.startswith("layer") or ".bn" in k for k in keys)
    assert {"stem.conv2.weight", "stem.conv3.norm.weight"} <= set(_keys("detectron2", "deep_stem"))
    assert {"linear.weight", "linear.bias"} <= set(_keys("detectron2", "plain50"))
    det = _keys("detectron2", "fcos")
    for key in ["backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.res4.0.conv1.norm.weight",
                "backbone.fpn_lateral3.weight", "backbone.fpn_output5.bias", "backbone.top_block.p7.weight",
                "proposal_generator.fcos_head.cls_tower.0.weight", "proposal_generator.fcos_head.ctrness.weight",
                "proposal_generator.fcos_head.bbox_pred.weight", "proposal_generator.fcos_head.scales.4.scale"]:
        assert key in det, key


def test_maskrcnn_fcos_names():
    """DESIGN: backbone.body.stem.conv1 / stem.bn1 (FrozenBN, no num_batches_tracked), layer1.0.downsample.0/1,
    backbone.fpn.fpn_inner2..4 / fpn_layer2..4 / top_blocks.p6/p7, rpn.head.*; DFConv2d conv2.conv / conv2.offset."""
    det = _keys("maskrcnn", "fcos_dcn_head")
    for key in ["backbone.body.stem.conv1.weight", "backbone.body.stem.bn1.running_var",
                "backbone.body.layer1.0.downsample.0.weight", "backbone.body.layer1.0.downsample.1.weight",
                "backbone.fpn.fpn_inner2.weight", "backbone.fpn.fpn_inner4.bias", "backbone.fpn.fpn_layer3.weight",
                "backbone.fpn.top_blocks.p6.weight", "backbone.fpn.top_blocks.p7.bias", "rpn.head.cls_tower.0.weight",
                "rpn.head.bbox_tower.10.bias", "rpn.head.cls_logits.weight", "rpn.head.bbox_pred.bias",
                "rpn.head.centerness.weight", "rpn.head.scales.0.scale", "rpn.head.cls_tower.9.conv.weight",
                "rpn.head.cls_tower.9.offset.weight"]:
        assert key in det, key
    assert not any(k.endswith("num_batches_tracked") for k in det)
    dcn = _keys("maskrcnn", "dcn_frozen_bn")
    assert {"backbone.body.layer3.0.conv2.conv.weight", "backbone.body.layer3.0.conv2.offset.bias"} <= set(dcn)
    assert "backbone.body.layer3.0.conv2.weight" not in dcn
    mbv2 = _keys("maskrcnn", "mobilenet_v2_fcos")  # FCOS's MNV2 (tonylins): flat block Sequentials
    assert {"backbone.body.features.0.0.weight", "backbone.body.features.1.conv.0.weight",
            "backbone.body.features.1.conv.4.running_var", "backbone.body.features.2.conv.3.weight",
            "backbone.body.features.17.conv.7.bias"} <= set(mbv2)
    assert mbv2["backbone.body.features.2.conv.3.weight"].shape[1:] == (1, 3, 3)  # the depthwise conv


def test_maskrcnn_drops_num_batches_tracked_of_a_bn_model():
    """FrozenBatchNorm2d has no counter: a BN model exports without it and reads back with the rest intact."""
    native = random_state_dict("fcos")
    theirs = convert_state_dict(native, "resbone", "maskrcnn")
    assert not any(k.endswith("num_batches_tracked") for k in theirs)
    back = convert_state_dict(theirs, "maskrcnn", "resbone")
    assert_identical(back, {k: v for k, v in native.items() if not k.endswith("num_batches_tracked")})
    kept = convert_state_dict(native, "resbone", "maskrcnn", num_batches_tracked=True)
    assert any(k.endswith("num_batches_tracked") for k in kept)


def test_caffe2_names():
    """DESIGN: conv1_w, res_conv1_bn_{s,b}, res2_0_branch1_w, res2_0_branch2{a,b,c}_w, ..._bn_{s,b}; GN: _gn_{s,b}."""
    keys = _keys("caffe2", "frozen_bn")
    for key in ["conv1_w", "res_conv1_bn_s", "res_conv1_bn_b", "res2_0_branch1_w", "res2_0_branch1_bn_s",
                "res2_0_branch2a_w", "res2_0_branch2b_bn_b", "res2_0_branch2c_bn_s", "res5_0_branch2c_w", "pred_w"]:
        assert key in keys, key
    assert len([k for k in keys if "running" in k or "_rm" in k]) == 0
    gn = _keys("caffe2", "gn")
    assert {"conv1_gn_s", "conv1_gn_b", "res3_0_branch2a_gn_s", "res3_0_branch1_gn_b"} <= set(gn)


def test_caffe2_affine_becomes_frozen_bn_with_unit_variance():
    """Blob `_bn_s/_bn_b` -> weight/bias with mean 0 and var 1 - eps (var 1 with eps=0, as FCOS's FrozenBN);
    `_momentum` blobs are solver state and are dropped."""
    blobs = {"conv1_w": torch.randn(4, 3, 7, 7), "res_conv1_bn_s": torch.rand(4), "res_conv1_bn_b": torch.randn(4),
             "res2_0_branch2a_w_momentum": torch.randn(4, 4, 1, 1)}
    native = convert_state_dict(blobs, "caffe2", "resbone")
    assert set(native) == {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"}
    assert torch.equal(native["bn1.running_mean"], torch.zeros(4))
    assert torch.equal(native["bn1.running_var"], torch.full((4,), 1.0) - EPS)
    assert torch.equal(convert_state_dict(blobs, "caffe2", "resbone", eps=0.0)["bn1.running_var"], torch.ones(4))


def test_mmdet_names():
    """mmcv names GroupNorm gn1/gn2/gn3; deep stem stem.0..7, avg_down downsample.1/2, DCN conv2.conv_offset
    stay native; FPN neck.lateral_convs / fpn_convs (P6, P7 after the laterals); FCOSHead cls_convs.k.conv/gn,
    conv_cls/conv_reg/conv_centerness, 0-d scales."""
    gn = _keys("mmdet", "gn")
    assert {"gn1.weight", "layer1.0.gn1.weight", "layer4.0.gn3.bias", "layer1.0.downsample.1.weight"} <= set(gn)
    assert not any(".bn" in k or k.startswith("bn") for k in gn)
    deep = _keys("mmdet", "deep_stem_avg_down")
    assert {"stem.0.weight", "stem.7.running_var", "layer2.0.downsample.2.weight"} <= set(deep)
    assert "layer2.0.conv2.conv_offset.weight" in _keys("mmdet", "dcn")
    assert "backbone.conv1.weight" in _keys("mmdet", "plain50", prefix="backbone.")
    det = _keys("mmdet", "fcos")
    for key in ["backbone.layer1.0.conv1.weight", "neck.lateral_convs.0.conv.weight", "neck.fpn_convs.2.conv.bias",
                "neck.fpn_convs.3.conv.weight", "neck.fpn_convs.4.conv.weight", "bbox_head.cls_convs.0.conv.weight",
                "bbox_head.cls_convs.3.gn.weight", "bbox_head.reg_convs.1.gn.bias", "bbox_head.conv_cls.weight",
                "bbox_head.conv_reg.bias", "bbox_head.conv_centerness.weight", "bbox_head.scales.4.scale"]:
        assert key in det, key
    assert det["bbox_head.scales.0.scale"].shape == ()
    mbv2 = _keys("mmdet", "mobilenet_v2_backbone")
    assert {"conv1.conv.weight", "conv1.bn.running_mean", "layer1.0.conv.0.conv.weight", "layer1.0.conv.1.bn.weight",
            "layer2.0.conv.2.conv.weight", "layer7.0.conv.2.bn.bias", "conv2.conv.weight"} <= set(mbv2)


def test_mmdet_fcos_head_bias():
    """mmdet's FCOSHead has no tower conv bias (conv_bias='auto' before GN): missing ones are read as zeros,
    zero ones are dropped on export, non-zero ones are kept (auto) or refused (conv_bias=False)."""
    native = random_state_dict("fcos")
    theirs = convert_state_dict(native, "resbone", "mmdet")
    assert "bbox_head.cls_convs.0.conv.bias" in theirs  # non-zero: kept for an mmdet config with conv_bias=True
    mmdet_default = {k: v for k, v in theirs.items()
                     if not (k.startswith("bbox_head.") and "_convs." in k and k.endswith("conv.bias"))}
    back = convert_state_dict(mmdet_default, "mmdet", "resbone")
    assert torch.equal(back["head.cls_tower.0.bias"], torch.zeros(64))
    assert_identical(convert_state_dict(back, "resbone", "mmdet"), mmdet_default)
    with pytest.raises(ValueError, match="conv_bias"):
        convert_state_dict(native, "resbone", "mmdet", conv_bias=False)


def test_mmpretrain_names():
    """mmpretrain: deep stem stem.N.conv/bn (ConvModule), avg_down without AvgPool at the stride-1 stage
    (layer1.0.downsample.0/1), SE se_layer.convK.conv, backbone. + head.fc."""
    keys = _keys("mmpretrain", "deep_stem_avg_down")
    for key in ["backbone.stem.0.conv.weight", "backbone.stem.0.bn.weight", "backbone.stem.2.bn.running_var",
                "backbone.layer1.0.downsample.0.weight", "backbone.layer1.0.downsample.1.weight",
                "backbone.layer2.0.downsample.1.weight", "backbone.layer2.0.downsample.2.weight", "head.fc.weight"]:
        assert key in keys, key
    assert "backbone.layer1.0.downsample.2.weight" not in keys
    se = _keys("mmpretrain", "se")
    assert {"backbone.layer1.0.se_layer.conv1.conv.weight", "backbone.layer3.0.se_layer.conv2.conv.bias"} <= set(se)
    gn = _keys("mmpretrain", "gn")
    assert {"backbone.gn1.weight", "backbone.layer2.0.gn2.weight"} <= set(gn)


def test_timm_deep_stem_names():
    """DESIGN: timm conv1.0/1/3/4/6 + bn1 <-> native stem.0/1/3/4/6/7."""
    keys = _keys("timm", "deep_stem")
    assert {"conv1.0.weight", "conv1.1.running_mean", "conv1.3.weight", "conv1.4.bias", "conv1.6.weight",
            "bn1.weight"} <= set(keys)
    assert not any(k.startswith("stem.") for k in keys)


def test_torchvision_fcos_names_match_torchvision():
    """fcos_to_torchvision gives exactly torchvision fcos_resnet50_fpn's key set (scales dropped) and
    fcos_from_torchvision inverts it bit-exactly, adding one unit Scale per level."""
    from torchvision.models.detection import fcos_resnet50_fpn

    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5).state_dict()
    native = fcos_from_torchvision(reference)
    assert [native[f"head.scales.{i}.scale"].tolist() for i in range(5)] == [[1.0]] * 5
    assert "head.scales.5.scale" not in native
    assert {"backbone.conv1.weight", "fpn.inner_blocks.2.weight", "fpn.layer_blocks.0.bias", "fpn.p6.weight",
            "fpn.p7.bias", "head.cls_tower.10.weight", "head.bbox_tower.9.bias", "head.cls_logits.weight",
            "head.bbox_pred.weight", "head.centerness.bias"} <= set(native)
    assert_identical(fcos_to_torchvision(native), reference)
    native["head.scales.2.scale"] = torch.tensor([1.5])
    with pytest.raises(ValueError, match="head.scales.2.scale"):
        fcos_to_torchvision(native)


@pytest.mark.parametrize("dialect,arch,match", [
    ("detectron2", "deep_stem_avg_down", "avg_down"),
    ("maskrcnn", "deep_stem", "deep stem"),
    ("caffe2", "deep_stem", "deep stem"),
    ("caffe2", "fcos", "backbones only"),
    ("timm", "fcos", "no detector"),
    ("mmpretrain", "fcos", "no detector"),
])
def test_structure_a_dialect_lacks_is_refused(dialect, arch, match):
    with pytest.raises(ValueError, match=match):
        convert_state_dict(random_state_dict(arch), "resbone", dialect)


def test_detect_names_the_distinctive_dialects():
    """Names that only one ecosystem writes are attributed to it; plain ResNet names (torchvision = timm =
    mmdet) are reported as torchvision."""
    expected = {("detectron2", "plain50"): "detectron2", ("maskrcnn", "frozen_bn"): "maskrcnn",
                ("caffe2", "frozen_bn"): "caffe2", ("timm", "deep_stem"): "timm", ("timm", "mobilenet_v2"): "timm",
                ("mmdet", "gn"): "mmdet", ("mmdet", "fcos"): "mmdet", ("mmpretrain", "deep_stem"): "mmpretrain",
                ("mmpretrain", "plain50"): "mmpretrain", ("torchvision", "fcos"): "torchvision",
                ("timm", "plain50"): "torchvision", ("mmdet", "plain18"): "torchvision",
                ("torchvision", "mobilenet_v2"): "torchvision"}
    for (dialect, arch), name in expected.items():
        assert detect_dialect(_keys(dialect, arch)) == name, (dialect, arch)
    assert detect_dialect(random_state_dict("fcos")) == "resbone"


def test_detect_unwraps_module_prefix_and_wrappers():
    theirs = _keys("detectron2", "plain18")
    wrapped = {"model": {"module." + k: v for k, v in theirs.items()}, "iteration": 5}
    assert_identical(convert_state_dict(wrapped, "auto", "resbone"), _native("detectron2", "plain18"))


def test_unknown_keys_give_a_clear_error():
    noise = {f"encoder.blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(6)}
    with pytest.raises(ValueError, match=r"no dialect explains.*encoder\.blocks\.0\.attn\.qkv\.weight"):
        detect_dialect(noise)
    with pytest.raises(ValueError, match="unknown dialect 'keras'.*detectron2"):
        convert_state_dict(random_state_dict("plain18"), "keras", "resbone")
    with pytest.raises(TypeError, match="do not apply"):
        convert_state_dict(random_state_dict("plain18"), "resbone", "timm", eps=0.0)


def test_aliases():
    theirs = _keys("maskrcnn", "frozen_bn")
    assert_identical(convert_state_dict(theirs, "fcos", "native"), convert_state_dict(theirs, "maskrcnn", "resbone"))


def test_builders_cover_their_names():
    """The toy models really have the structures the cases are named after."""
    assert "stem.7.weight" in BUILDERS["deep_stem"]().state_dict()
    assert "layer2.0.conv2.conv_offset.weight" in BUILDERS["dcn"]().state_dict()
    assert "layer1.0.se.fc1.weight" in BUILDERS["se"]().state_dict()
    assert "layer1.0.bn1.IN.weight" in BUILDERS["ibn"]().state_dict()
    assert "head.cls_tower.9.conv_offset.weight" in BUILDERS["fcos_dcn_head"]().state_dict()
