"""resbone.builders: mmdetection's own backbone configs build, run and mean what they mean there (outputs
against torchvision, freezing, stride placement, norms, DCN placement); every bad input is a clear error.
FCOS's CONV_BODY configs are tested with their builder, in tests/detection/test_backbone.py."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from resbone.builders import build_backbone
from resbone.layers.attention import ContextBlock, GeneralizedAttention
from resbone.layers.conv import DeformConv2dPack, ModulatedDeformConv2dPack
from resbone.models.mobilenetv2 import MobileNetV2
from tests.helpers import randomize_norms

# ---- mmdetection's own configs (the `backbone=` dicts, verbatim, with their _base_ merged) -------------
_R50 = dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
            norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch",
            init_cfg=dict(type="Pretrained", checkpoint="torchvision://resnet50"))
MMDET_CONFIGS = {
    # configs/_base_/models/faster-rcnn_r50_fpn.py (retinanet_r50_fpn.py has the same backbone)
    "faster-rcnn_r50_fpn": _R50,
    # configs/fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py
    "fcos_r50-caffe": dict(_R50, norm_cfg=dict(type="BN", requires_grad=False), style="caffe",
                           init_cfg=dict(type="Pretrained", checkpoint="open-mmlab://detectron/resnet50_caffe")),
    # configs/dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py
    "faster-rcnn_r50-dconv-c3-c5": dict(_R50, dcn=dict(type="DCN", deform_groups=1, fallback_on_stride=False),
                                        stage_with_dcn=(False, True, True, True)),
    # configs/fcos/fcos_r50-dcn-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py
    "fcos_r50-dcn-caffe": dict(_R50, norm_cfg=dict(type="BN", requires_grad=False), style="caffe",
                               dcn=dict(type="DCNv2", deform_groups=1, fallback_on_stride=False),
                               stage_with_dcn=(False, True, True, True)),
    # configs/gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py
    "mask-rcnn_r50-gcb-r4-c3-c5": dict(_R50, plugins=[dict(cfg=dict(type="ContextBlock", ratio=1. / 4),
                                                           stages=(False, True, True, True), position="after_conv3")]),
    # configs/empirical_attention/faster-rcnn_r50-attn0010_fpn_1x_coco.py
    "faster-rcnn_r50-attn0010": dict(_R50, plugins=[dict(
        cfg=dict(type="GeneralizedAttention", spatial_range=-1, num_heads=8, attention_type="0010", kv_stride=2),
        stages=(False, False, True, True), position="after_conv2")]),
    # configs/_base_/models/faster-rcnn_r50-caffe-c4.py (a 3-stage body returning C4)
    "faster-rcnn_r50-caffe-c4": dict(type="ResNet", depth=50, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                                     out_indices=(2,), frozen_stages=1, norm_cfg=dict(type="BN", requires_grad=False),
                                     norm_eval=True, style="caffe",
                                     init_cfg=dict(type="Pretrained",
                                                   checkpoint="open-mmlab://detectron2/resnet50_caffe")),
    # configs/ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py
    "ssdlite_mobilenetv2": dict(type="MobileNetV2", out_indices=(4, 7), norm_cfg=dict(type="BN", eps=0.001,
                                momentum=0.03), init_cfg=dict(type="TruncNormal", layer="Conv2d", std=0.03)),
}


@pytest.mark.parametrize("name", sorted(MMDET_CONFIGS))
def test_mmdet_configs_build_and_run(name, rng):
    model = build_backbone(copy.deepcopy(MMDET_CONFIGS[name]), load_pretrained=False).train()
    outs = model(torch.randn(1, 3, 64, 64, generator=rng))
    assert isinstance(outs, tuple) and len(outs) == len(model.feature_info)
    for out, info in zip(outs, model.feature_info):
        assert out.shape[1:] == (info["channels"], 64 // info["stride"], 64 // info["stride"])
    sum(o.sum() for o in outs).backward()


def test_mmdet_defaults_norm_eval_zero_init_residual_and_frozen_stages():
    model = build_backbone(dict(type="ResNet", depth=50, frozen_stages=1)).train()
    assert model.out_indices == (0, 1, 2, 3)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))  # norm_eval=True
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for layer in (model.layer1, model.layer4) for b in layer)
    assert not any(p.requires_grad for m in (model.conv1, model.bn1, model.layer1) for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    caffe = build_backbone(MMDET_CONFIGS["fcos_r50-caffe"], load_pretrained=False)
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    assert not any(p.requires_grad for p in caffe.layer3[0].bn1.parameters())  # requires_grad=False norms


def test_mmdet_resnet_loads_a_torchvision_checkpoint_and_equals_torchvision_features(tmp_path, rng):
    ref = randomize_norms(torchvision.models.resnet50()).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(ref.state_dict(), path)
    cfg = dict(MMDET_CONFIGS["faster-rcnn_r50_fpn"], init_cfg=dict(type="Pretrained", checkpoint=str(path)),
               zero_init_residual=False)
    model = build_backbone(cfg).eval()
    x = torch.randn(1, 3, 64, 64, generator=rng)
    expected = create_feature_extractor(ref, {f"layer{i}": str(i) for i in range(1, 5)})(x)
    for i, out in enumerate(model(x)):
        torch.testing.assert_close(out, expected[str(i + 1)], atol=1e-4, rtol=1e-4)
    again = build_backbone(dict(type="ResNet", depth=50, pretrained=str(path))).eval()
    torch.testing.assert_close(again(x)[3], expected["4"], atol=1e-4, rtol=1e-4)
    # a detector checkpoint: init_cfg's prefix picks the backbone out of it, as mmdet/mmengine do
    detector = {f"backbone.{k}": v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    detector["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save({"state_dict": detector, "meta": {"epoch": 12}}, tmp_path / "detector.pth")
    prefixed = build_backbone(dict(type="ResNet", depth=50, init_cfg=dict(
        type="Pretrained", checkpoint=str(tmp_path / "detector.pth"), prefix="backbone."))).eval()
    torch.testing.assert_close(prefixed(x)[3], expected["4"], atol=1e-4, rtol=1e-4)


def test_resnext_v1c_v1d_and_mobilenet_types_mean_what_mmdet_means():
    resnext = build_backbone(dict(type="ResNeXt", depth=50, groups=32, base_width=4))
    assert resnext.layer1[0].conv2.groups == 32 and resnext.layer1[0].conv2.out_channels == 128
    plain = build_backbone(dict(type="ResNeXt", depth=50))  # groups=1: mmdet's width is planes
    assert plain.layer1[0].conv2.out_channels == 64
    v1c = build_backbone(dict(type="ResNetV1c", depth=50))
    assert "stem.0.weight" in v1c.state_dict() and "conv1.weight" not in v1c.state_dict()
    v1d = build_backbone(dict(type="ResNetV1d", depth=50))
    assert isinstance(v1d.layer2[0].downsample[0], nn.AvgPool2d) and "layer2.0.downsample.1.weight" in v1d.state_dict()
    mobile = build_backbone(dict(type="MobileNetV2", widen_factor=0.5, frozen_stages=1))
    assert isinstance(mobile, MobileNetV2) and mobile.out_channels == [16, 16, 48, 1280]
    assert not any(p.requires_grad for p in mobile.features[1].parameters())


def test_stage_with_dcn_puts_dcn_exactly_where_asked_and_starts_as_the_plain_network(rng):
    cfg = dict(type="ResNet", depth=50, dcn=dict(type="DCNv2", deform_groups=2),
               stage_with_dcn=(False, True, False, True),
               zero_init_residual=False)
    model = build_backbone(cfg).eval()
    for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        for block in layer:
            assert isinstance(block.conv2, ModulatedDeformConv2dPack) == (stage in (1, 3))
            assert type(block.conv1) is nn.Conv2d and type(block.conv3) is nn.Conv2d
    assert model.state_dict()["layer2.0.conv2.conv_offset.weight"].shape == (3 * 2 * 9, 128, 3, 3)
    assert model.layer2[0].conv2.stride == (2, 2)
    plain = build_backbone(dict(type="ResNet", depth=50, zero_init_residual=False)).eval()
    randomize_norms(plain)
    x = torch.randn(1, 3, 64, 64, generator=rng)
    # DCNv2 starts at mask 0.5: compare the v1 network instead, which starts exactly as the plain one
    v1 = build_backbone(dict(cfg, dcn=dict(type="DCN"))).eval()
    v1.load_state_dict(plain.state_dict(), strict=False)
    assert isinstance(v1.layer4[0].conv2, DeformConv2dPack)
    for ours, ref in zip(v1(x), plain(x)):  # float32 tolerance relative to the map's scale
        torch.testing.assert_close(ours, ref, atol=1e-5 * ref.abs().max().item(), rtol=1e-4)


def test_mmdet_plugins_land_in_the_stages_named():
    model = build_backbone(MMDET_CONFIGS["mask-rcnn_r50-gcb-r4-c3-c5"], load_pretrained=False)
    assert model.layer1[0].after_conv3 is None
    assert all(isinstance(b.after_conv3[0], ContextBlock) and b.after_conv3[0].planes == b.conv3.out_channels // 4
               for layer in (model.layer2, model.layer3, model.layer4) for b in layer)
    attn = build_backbone(MMDET_CONFIGS["faster-rcnn_r50-attn0010"], load_pretrained=False)
    assert attn.layer2[0].after_conv2 is None and isinstance(attn.layer3[0].after_conv2[0], GeneralizedAttention)


def test_pretrained_goes_through_resbone_convert(monkeypatch, tmp_path):
    import resbone.convert

    calls = []
    # returns a clean report, as the real one does for a fitting file (build_backbone reads it to warn)
    monkeypatch.setattr(resbone.convert, "load_checkpoint",
                        lambda *a, **k: calls.append((a, k)) or resbone.convert.LoadReport("resbone"))
    path = str(tmp_path / "any.pth")
    model = build_backbone(dict(type="ResNet", depth=18, init_cfg=dict(type="Pretrained", checkpoint=path)))
    assert calls == [((model, path), dict(dialect="auto", strict=False, prefix=None))]
    build_backbone(dict(type="ResNet", depth=18, pretrained=path), load_pretrained=False)
    assert len(calls) == 1


@pytest.mark.parametrize("cfg,error,words", [
    (dict(type="ResNeSt", depth=50), KeyError, ["'ResNeSt'", "ResNetV1d", "MobileNetV2"]),
    (dict(type="ResNet", depth=50, stem_stride=2), TypeError, ["stem_stride", "frozen_stages"]),
    (dict(type="ResNet"), KeyError, ["depth"]),
    (dict(type="ResNet", depth=50, conv_cfg=dict(type="DCN")), ValueError, ["conv_cfg", "stage_with_dcn"]),
    (dict(type="ResNet", depth=50, dcn=dict(type="DCNv3")), ValueError, ["'DCNv3'", "DCNv2"]),
    (dict(type="ResNet", depth=50, dcn=dict(type="DCN"), stage_with_dcn=(False, True)), ValueError,
     ["stage_with_dcn", "4"]),
    (dict(type="ResNet", depth=50, plugins=[dict(cfg=dict(type="ContextBlock", ratio=0.25), position="after_conv4")]),
     ValueError, ["'after_conv4'", "after_conv3"]),
    (dict(type="ResNetV1d", depth=50, avg_down=False), ValueError, ["avg_down", "True"]),
    (dict(type="MobileNetV2", act_cfg=dict(type="LeakyReLU", negative_slope=0.1)), ValueError,
     ["LeakyReLU", "ReLU6"]),
    (dict(type="ResNet", depth=50, init_cfg=dict(type="Pretrained", checkpoint="open-mmlab://no_such")), KeyError,
     ["open-mmlab://no_such", "open-mmlab://resnet50_v1c"]),
    (dict(type="ResNet", depth=50, pretrained="a.pth", init_cfg=dict(type="Pretrained", checkpoint="b.pth")),
     ValueError, ["a.pth", "b.pth"]),
    (dict(type="ResNet", depth=50, init_cfg=dict(type="Pretrained", checkpoint="a.pth", map_location="cpu")),
     KeyError, ["map_location", "prefix"]),
    ("ResNet", TypeError, ["'ResNet'", "dict"]),
])
def test_bad_mmdet_configs_name_the_value_and_the_allowed_ones(cfg, error, words):
    with pytest.raises(error) as info:
        build_backbone(cfg)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_pretrained_that_does_not_fit_warns_naming_the_problems(tmp_path):
    """strict=False as mmdet, but not silent: a resnet18 file given to a depth-50 config used to load a
    handful of tensors without a word. The warning names the missing and mismatched keys."""
    import warnings

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.warns(UserWarning, match=r"ResNet pretrained .*r18\.pth.*missing.*layer1\.0\.conv3\.weight"):
        build_backbone(dict(type="ResNet", depth=50, pretrained=str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fitting file (its fc dropped for a backbone) stays quiet
        model = build_backbone(dict(type="ResNet", depth=18, pretrained=str(path)))
    assert torch.equal(model.layer4[1].conv2.weight, torch.load(path)["layer4.1.conv2.weight"])


# ---- mmpretrain's spellings, against mmpretrain's own backbone classes --------------------------------
MMPRETRAIN_CONFIGS = {
    "ResNet-18": dict(type="ResNet", depth=18),
    "ResNetV1d-50": dict(type="ResNetV1d", depth=50, out_indices=(1, 2, 3)),
    "ResNeXt-50-32x4d": dict(type="ResNeXt", depth=50),
    "ResNeXt-groups1": dict(type="ResNeXt", depth=50, groups=1, width_per_group=8, out_indices=(0, 3)),
    "SEResNet-50": dict(type="SEResNet", depth=50, se_ratio=16, style="caffe"),
    "SEResNeXt-50": dict(type="SEResNeXt", depth=50, groups=32, width_per_group=4, out_indices=(2, 3)),
    "MobileNetV2": dict(type="MobileNetV2", widen_factor=0.5),
}


@pytest.mark.parametrize("name", sorted(MMPRETRAIN_CONFIGS))
def test_mmpretrain_configs_equal_mmpretrains_backbones(name, rng):
    from resbone.convert import load_checkpoint
    from tests.helpers.mmpretrain_ref import mmpretrain_backbone

    cfg = dict(MMPRETRAIN_CONFIGS[name])
    torch.manual_seed(0)
    reference = randomize_norms(mmpretrain_backbone(cfg["type"])(**{k: v for k, v in cfg.items() if k != "type"}))
    ours = build_backbone(dict(cfg, _scope_="mmpretrain"))
    assert ours.out_indices == tuple(reference.out_indices) and ours.norm_eval == reference.norm_eval is False
    report = load_checkpoint(ours, reference.state_dict(), dialect="mmpretrain")  # strict
    assert report.ok
    x = torch.randn(2, 3, 64, 64, generator=rng)
    reference.eval()  # mmpretrain's train() returns None
    with torch.no_grad():
        got, expected = ours.eval()(x), reference(x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_mmpretrain_scope_is_read_from_the_argument_the_config_or_the_type():
    for model in (build_backbone(dict(type="SEResNet", depth=50), scope="mmpretrain"),
                  build_backbone(dict(type="mmpretrain.SEResNet", depth=50))):
        assert model.out_indices == (3,) and model.layer1[0].se is not None
    mmdet = build_backbone(dict(type="ResNet", depth=18), scope="mmdet")
    assert mmdet.out_indices == (0, 1, 2, 3) and mmdet.norm_eval


@pytest.mark.parametrize("cfg, kwargs, error, words", [
    (dict(type="SEResNet", depth=50), {}, KeyError, ["'SEResNet'", "'mmdet'", "ResNeXt"]),
    (dict(type="ResNet", depth=50, _scope_="mmseg"), {}, ValueError, ["'mmseg'", "mmpretrain"]),
    (dict(type="ResNet", depth=50, _scope_="mmdet"), dict(scope="mmpretrain"), ValueError, ["conflicting"]),
    (dict(type="SEResNet", depth=18), dict(scope="mmpretrain"), KeyError, ["18", "50, 101, 152"]),
    (dict(type="ResNet", depth=50, drop_path_rate=0.1), dict(scope="mmpretrain"), ValueError, ["drop_path_rate"]),
    (dict(type="ResNeXt", depth=50, base_width=4), dict(scope="mmpretrain"), TypeError, ["base_width",
                                                                                       "width_per_group"]),
])
def test_mmpretrain_spelling_errors_name_the_value(cfg, kwargs, error, words):
    with pytest.raises(error) as info:
        build_backbone(cfg, **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)
