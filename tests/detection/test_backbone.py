"""resbone.detection.backbone: FCOS's CONV_BODY configs build, run and mean what they mean there (C3-C5
strides and channels, FCOS's stage specs, freezing, stride placement against torchvision's resnet50, norms,
DCN placement); every bad input is a clear error, a missing key too (builders never default a key)."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FrozenBatchNorm2d
from yacs.config import CfgNode

import resbone
from resbone.detection.backbone import FCOS_CONV_BODIES, build_fcos_backbone
from resbone.detection.defaults import detector_cfg
from resbone.layers.conv import ModulatedDeformConv2dPack
from tests.helpers import randomize_norms


def fcos_cfg(body: str = "R-50-FPN-RETINANET", **resnets) -> CfgNode:
    """FCOS's defaults (resbone.detection.defaults) with this body and these MODEL.RESNETS values."""
    return detector_cfg({"MODEL": {"BACKBONE": {"CONV_BODY": body}, "RESNETS": resnets}})


@pytest.mark.parametrize("body,strides,channels", [
    ("R-50-FPN-RETINANET", [8, 16, 32], [512, 1024, 2048]),
    ("R-50-FPN", [4, 8, 16, 32], [256, 512, 1024, 2048]),
    ("R-50-C4", [16], [1024]),
    ("R-50-C5", [32], [2048]),
    ("MNV2-FPN-RETINANET", [8, 16, 32], [32, 96, 320]),
])
def test_fcos_bodies_return_their_maps_with_strides_and_channels(body, strides, channels, rng):
    model = build_fcos_backbone(fcos_cfg(body)).eval()
    assert [i["stride"] for i in model.feature_info] == strides
    assert [i["channels"] for i in model.feature_info] == channels
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64, generator=rng))
    assert [o.shape[1:] for o in outs] == [(c, 64 // s, 64 // s) for c, s in zip(channels, strides)]


def _group_norm_32(channels: int, **kwargs) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, **kwargs)


def test_narrow_basicblock_body_computes_what_timm_computes_with_those_channels(rng):
    """RES2_OUT_CHANNELS sets a BasicBlock body's width (stage i: RES2_OUT_CHANNELS * 2**i, as in
    maskrcnn-benchmark); timm's ResNet with channels=(32, 64, 128, 256) is the reference (its 7x7 stem keeps
    64 channels, so layer1 gets a 64 -> 32 projection shortcut in both)."""
    timm_resnet = pytest.importorskip("timm.models.resnet")
    cfg = fcos_cfg("R-18-FPN-RETINANET", RES2_OUT_CHANNELS=32, STEM_OUT_CHANNELS=64, STEM_FUNC="StemWithGN",
                   TRANS_FUNC="BottleneckWithGN")
    ours = build_fcos_backbone(cfg).eval()
    assert [i["channels"] for i in ours.feature_info] == [64, 128, 256]
    ref = timm_resnet.ResNet(timm_resnet.BasicBlock, [2, 2, 2, 2], num_classes=0,
                             channels=(32, 64, 128, 256), norm_layer=_group_norm_32).eval()
    for module in ref.modules():  # GroupNorm's weight/bias start at 1/0: randomize them so they matter
        if isinstance(module, nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.2, generator=rng)
            nn.init.normal_(module.bias, 0.0, 0.2, generator=rng)
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 96, 96, generator=rng)
    with torch.no_grad():
        c2 = ref.layer1(ref.maxpool(ref.act1(ref.bn1(ref.conv1(x)))))
        expected = [ref.layer2(c2)]
        expected += [ref.layer3(expected[-1])]
        expected += [ref.layer4(expected[-1])]
        got = ours(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_fcos_stage_specs_give_the_block_counts():
    for body, blocks in (("R-101-C4", [3, 4, 23]), ("R-152-FPN", [3, 8, 36, 3])):
        model = build_fcos_backbone(fcos_cfg(body))
        assert [len(getattr(model, f"layer{i + 1}")) for i in range(len(blocks))] == blocks
        assert not hasattr(model, f"layer{len(blocks) + 1}")
    fcos_names = {"R-50-C4", "R-50-C5", "R-101-C4", "R-101-C5", "R-50-FPN", "R-50-FPN-RETINANET", "R-101-FPN",
                  "R-101-FPN-RETINANET", "R-152-FPN", "MNV2-FPN", "MNV2-FPN-RETINANET"}
    assert fcos_names <= set(FCOS_CONV_BODIES)


def test_fcos_freeze_conv_body_at_2_freezes_stem_and_layer1():
    model = build_fcos_backbone(fcos_cfg()).train()
    frozen = [model.conv1, model.bn1, model.layer1]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    mobile = build_fcos_backbone(fcos_cfg("MNV2-FPN-RETINANET"))  # FCOS freezes features[0:2]
    assert not any(p.requires_grad for m in mobile.features[:2] for p in m.parameters())
    assert all(p.requires_grad for p in mobile.features[2].parameters())


def test_fcos_pytorch_style_frozen_bn_body_equals_torchvision_with_eps_0(rng):
    """STRIDE_IN_1X1=False + FrozenBN(eps=0) is torchvision's resnet50 with FrozenBatchNorm2d(eps=0)."""
    ref = torchvision.models.resnet50(norm_layer=partial(FrozenBatchNorm2d, eps=0.0)).eval()
    randomize_norms(ref)
    model = build_fcos_backbone(fcos_cfg(STRIDE_IN_1X1=False)).eval()
    assert isinstance(model.bn1, FrozenBatchNorm2d) and model.bn1.eps == 0.0
    model.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=rng)
    expected = create_feature_extractor(ref, {"layer2": "c3", "layer3": "c4", "layer4": "c5"})(x)
    for out, name in zip(model(x), ("c3", "c4", "c5")):
        torch.testing.assert_close(out, expected[name], atol=1e-4, rtol=1e-4)


def test_fcos_stride_groups_gn_dcn_and_dilation_keys():
    caffe = build_fcos_backbone(fcos_cfg())
    assert caffe.layer3[0].conv1.stride == (2, 2) and caffe.layer3[0].conv2.stride == (1, 1)
    x101 = build_fcos_backbone(fcos_cfg("R-50-C4", NUM_GROUPS=32, WIDTH_PER_GROUP=8))
    assert (x101.layer1[0].conv2.groups, x101.layer1[0].conv2.out_channels, x101.layer3[0].conv2.out_channels) == \
        (32, 256, 1024)
    gn = build_fcos_backbone(fcos_cfg(STEM_FUNC="StemWithGN", TRANS_FUNC="BottleneckWithGN"))
    assert isinstance(gn.bn1, nn.GroupNorm) and gn.bn1.num_groups == 32
    cfg = fcos_cfg(STEM_FUNC="StemWithGN", TRANS_FUNC="BottleneckWithGN")
    cfg.MODEL.GROUP_NORM.update(DIM_PER_GP=16, NUM_GROUPS=-1, EPSILON=1e-3)
    per_dim = build_fcos_backbone(cfg)
    assert (per_dim.layer4[0].bn3.num_groups, per_dim.layer4[0].bn3.eps) == (2048 // 16, 1e-3)
    dcn = build_fcos_backbone(fcos_cfg(STAGE_WITH_DCN=(False, False, True, True), WITH_MODULATED_DCN=True,
                                       DEFORMABLE_GROUPS=2))
    assert type(dcn.layer2[0].conv2) is nn.Conv2d
    assert all(isinstance(b.conv2, ModulatedDeformConv2dPack) and b.conv2.deform_groups == 2
               for layer in (dcn.layer3, dcn.layer4) for b in layer)
    dilated = build_fcos_backbone(fcos_cfg("R-50-FPN", RES5_DILATION=2))
    assert dilated.feature_info[-1]["stride"] == 16 and dilated.layer4[1].conv2.dilation == (2, 2)


@pytest.mark.parametrize("body,resnets,backbone,error,words", [
    ("R-50-FPN-P5", {}, {}, KeyError, ["'R-50-FPN-P5'", "R-50-FPN-RETINANET", "MNV2-FPN-RETINANET"]),
    ("R-50-FPN", dict(STEM_FUNC="StemWithSyncBN"), {}, KeyError, ["StemWithSyncBN", "StemWithGN"]),
    ("R-50-FPN", dict(TRANS_FUNC="BottleneckWithGN"), {}, ValueError, ["StemWithFixedBatchNorm", "BottleneckWithGN"]),
    ("R-50-FPN", dict(STAGE_WITH_DCN=(False, True, True)), {}, ValueError, ["STAGE_WITH_DCN", "4"]),
    ("R-50-FPN", dict(RES2_OUT_CHANNELS=128), {}, ValueError, ["RES2_OUT_CHANNELS=128", "256"]),
    ("R-18-FPN-RETINANET", dict(RES2_OUT_CHANNELS=36), {}, ValueError, ["RES2_OUT_CHANNELS=36", "multiple of 8"]),
    ("R-18-FPN-RETINANET", dict(RES2_OUT_CHANNELS=0), {}, ValueError, ["RES2_OUT_CHANNELS", "positive", "0"]),
    ("R-50-FPN", dict(RES5_DILATION=4), {}, ValueError, ["RES5_DILATION", "4"]),
    ("R-50-FPN", dict(DEFORMABLE_GROUPS=0), {}, ValueError, ["DEFORMABLE_GROUPS", "0"]),
    ("R-50-FPN", {}, dict(FREEZE_CONV_BODY_AT=6), ValueError, ["FREEZE_CONV_BODY_AT=6", "0..5"]),
    ("R-50-FPN", {}, dict(FREEZE_CONV_BODY_AT=-1), ValueError, ["FREEZE_CONV_BODY_AT", "-1"]),
    ("MNV2-FPN-RETINANET", {}, dict(FREEZE_CONV_BODY_AT=3), ValueError, ["FREEZE_CONV_BODY_AT=3", "[0, 1, 2, 4"]),
])
def test_bad_fcos_configs_name_the_value_and_the_allowed_ones(body, resnets, backbone, error, words):
    cfg = fcos_cfg(body, **resnets)
    cfg.MODEL.BACKBONE.update(backbone)
    with pytest.raises(error) as info:
        build_fcos_backbone(cfg)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_fcos_group_norm_needs_exactly_one_of_dim_per_gp_and_num_groups():
    cfg = fcos_cfg(STEM_FUNC="StemWithGN", TRANS_FUNC="BottleneckWithGN")
    cfg.MODEL.GROUP_NORM.update(DIM_PER_GP=16, NUM_GROUPS=32)
    with pytest.raises(ValueError, match="exactly one of DIM_PER_GP"):
        build_fcos_backbone(cfg)


def test_the_readme_example_builds_c3_to_c5():
    from resbone.detection.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.CONV_BODY", "R-50-FPN-RETINANET"])
    body = resbone.build_fcos_backbone(cfg)
    assert [i["stride"] for i in body.feature_info] == [8, 16, 32]
    assert not any(p.requires_grad for p in body.layer1.parameters())  # FREEZE_CONV_BODY_AT=2


def test_a_config_without_the_declared_keys_names_what_is_missing():
    """Builders read keys and never default them: a hand-made partial config is an error, not FCOS's defaults."""
    partial_cfg = CfgNode(dict(MODEL=dict(BACKBONE=dict(CONV_BODY="R-50-FPN-RETINANET"))))
    missing = r"MODEL\.BACKBONE\.FREEZE_CONV_BODY_AT.*MODEL\.RESNETS\.NUM_GROUPS.*detector_cfg"
    with pytest.raises(KeyError, match=missing):
        build_fcos_backbone(partial_cfg)
