"""The FCOS detector end to end: the calling convention of torchvision detectors (lists of RGB 0..1 images in,
losses or detections in input pixels out), any resbone backbone plugs in, images without boxes
train, and every bad input gets a clear error."""
from __future__ import annotations

import pytest
import torch

from resbone.detection.defaults import detector_cfg
from resbone.detection.detector import build_detector
from resbone.factory import create_model

SMALL = {"INPUT": {"MIN_SIZE_TRAIN": (64, 80), "MAX_SIZE_TRAIN": 100, "MIN_SIZE_TEST": 64, "MAX_SIZE_TEST": 100},
         "DATALOADER": {"SIZE_DIVISIBILITY": 32}}


def _cfg(body="R-18-FPN-RETINANET", **fcos):
    res2 = 64 if body.startswith(("R-18", "R-34")) else 256  # BasicBlock bodies end stage 2 at 64 channels
    return detector_cfg({**SMALL, "MODEL": {"BACKBONE": {"CONV_BODY": body},
                                            "RESNETS": {"BACKBONE_OUT_CHANNELS": 64, "RES2_OUT_CHANNELS": res2},
                                            "RETINANET": {"USE_C5": False},
                                            "FCOS": {"NUM_CLASSES": 4, "NUM_CONVS": 1, **fcos}}})


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 50, 70, generator=g), torch.rand(3, 64, 40, generator=g)]


def _targets():
    return [dict(boxes=torch.tensor([[5.0, 6.0, 40.0, 45.0], [30.0, 10.0, 68.0, 30.0]]), labels=torch.tensor([1, 3])),
            dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))]


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    model = build_detector(_cfg(INFERENCE_TH=0.0))
    with torch.no_grad():  # a confident head, so that detections exist
        model.head.cls_logits.bias.fill_(2.0)
    return model


def test_eval_returns_detections_in_input_pixels(r18):
    r18.eval()
    with torch.no_grad():
        out = r18(_images())
    assert len(out) == 2
    for det, image in zip(out, _images()):
        assert set(det) == {"boxes", "scores", "labels"}
        assert 0 < len(det["boxes"]) <= 100
        assert det["labels"].dtype == torch.int64 and int(det["labels"].min()) >= 1 and int(det["labels"].max()) <= 3
        h, w = image.shape[-2:]
        assert float(det["boxes"][:, 2].max()) <= w + 1e-4 and float(det["boxes"][:, 3].max()) <= h + 1e-4
        assert float(det["boxes"].min()) >= 0 and bool((det["scores"][:-1] >= det["scores"][1:]).all())


def test_train_returns_the_three_losses_and_an_empty_image_works(r18):
    r18.train()
    try:
        losses = r18(_images(), _targets())
        assert set(losses) == {"loss_cls", "loss_reg", "loss_centerness"}
        assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
        sum(losses.values()).backward()
        assert r18.head.cls_logits.weight.grad is not None
        empty = [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))] * 2
        losses = r18(_images(), empty)
        assert float(losses["loss_reg"].detach()) == 0.0 and float(losses["loss_centerness"].detach()) == 0.0
    finally:
        r18.eval()
        r18.zero_grad()


def test_train_mode_freezes_like_fcos(r18):
    """FREEZE_CONV_BODY_AT=2 (FCOS's default) freezes the stem and layer1."""
    r18.train()
    try:
        assert not r18.backbone.conv1.weight.requires_grad and not r18.backbone.layer1[0].conv1.weight.requires_grad
        assert r18.backbone.layer2[0].conv1.weight.requires_grad
    finally:
        r18.eval()


@pytest.mark.parametrize("body", ["R-50-FPN-RETINANET", "R-50-FPN", "MNV2-FPN-RETINANET"])
def test_fcos_bodies_plug_in(body):
    torch.manual_seed(0)
    model = build_detector(_cfg(body)).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert set(out[0]) == {"boxes", "scores", "labels"}
    assert model.fpn.inner_blocks[0].in_channels == model.backbone.feature_info[model.feature_indices[0]]["channels"]


def test_any_resbone_backbone_object_plugs_in():
    backbone = create_model("resnet34", num_classes=None, out_indices=(1, 2, 3))
    model = build_detector(_cfg(), backbone=backbone).train()
    losses = model(_images(), _targets())
    assert torch.isfinite(sum(losses.values()))


def test_fcos_imprv_options_build_and_train():
    model = build_detector(_cfg(CENTERNESS_ON_REG=True, NORM_REG_TARGETS=True, CENTER_SAMPLING_RADIUS=1.5,
                                IOU_LOSS_TYPE="giou", USE_DCN_IN_TOWER=True)).train()
    losses = model(_images(), _targets())
    assert torch.isfinite(sum(losses.values()))
    assert type(model.head.cls_tower[0]).__name__ == "ModulatedDeformConv2dPack"


def test_config_is_not_mutated():
    cfg = _cfg()
    before = cfg.dump()
    build_detector(cfg)
    assert cfg.dump() == before


def test_a_config_without_the_declared_keys_names_what_is_missing():
    """build_detector reads keys and never defaults them (it used to fill FCOS's defaults in silently)."""
    cfg = _cfg()
    del cfg.MODEL.FCOS["LOCATION_OFFSET"]
    del cfg.INPUT["TO_BGR255"]
    with pytest.raises(KeyError, match=r"MODEL\.FCOS\.LOCATION_OFFSET, INPUT\.TO_BGR255.*detector_cfg\(\)"):
        build_detector(cfg)


def _one_image_batch_norm_model():
    """resnet18 with BatchNorm in training mode (torchvision's norm), images resized to 32 px: C5 is 1x1."""
    cfg = _cfg()
    cfg.INPUT.update(MIN_SIZE_TRAIN=(32,), MAX_SIZE_TRAIN=32)
    backbone = create_model("resnet18", num_classes=None, out_indices=(1, 2, 3), norm_eval=False)
    return build_detector(cfg, backbone=backbone).train()


def test_one_image_whose_last_map_is_1x1_names_the_size_and_the_minimum():
    """BatchNorm cannot train on one value per channel; its own error ('Expected more than 1 value per
    channel') named neither the image size nor the way out."""
    model = _one_image_batch_norm_model()
    image = [torch.rand(3, 30, 30)]
    target = [dict(boxes=torch.tensor([[2.0, 3.0, 20.0, 25.0]]), labels=torch.tensor([1]))]
    with pytest.raises(ValueError, match=r"one image of 30x30 \(resized and padded to 32x32\).*1x1 map at "
                                         r"stride 32.*BatchNorm2d layers of its backbone.*minimum is 33 px.*"
                                         r"2 images per batch"):
        model(image, target)
    # the check fires only where BatchNorm would fail: two such images, or frozen statistics, train
    assert torch.isfinite(sum(model(image * 2, target * 2).values()))
    model.backbone.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    assert torch.isfinite(sum(model(image, target).values()))


def test_one_image_under_a_one_channel_per_group_head_names_the_minimum():
    """A 32-channel head has GroupNorm(32, 32): one value per channel at a 1x1 P7, in evaluation too."""
    cfg = _cfg()
    cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 32
    model = build_detector(cfg).eval()
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"1x1 map at stride 128.*GroupNorm layers of its head.*minimum is 129"):
            model([torch.rand(3, 64, 64)])
        assert len(model([torch.rand(3, 64, 64)] * 2)) == 2  # two images: GroupNorm sees two values


def test_bad_inputs_raise_clear_errors(r18):
    r18.eval()
    with pytest.raises(TypeError, match="list of image tensors"):
        r18(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        r18([torch.rand(1, 32, 32)])
    with pytest.raises(TypeError, match="float"):
        r18([torch.zeros(3, 32, 32, dtype=torch.uint8)])
    r18.train()
    try:
        with pytest.raises(ValueError, match="needs targets"):
            r18(_images())
        with pytest.raises(ValueError, match="2 images but 1 targets"):
            r18(_images(), _targets()[:1])
        with pytest.raises(KeyError, match="'boxes' and 'labels'"):
            r18(_images(), [dict(boxes=torch.zeros(0, 4))] * 2)
        bad = _targets()
        bad[0] = dict(boxes=torch.tensor([[5.0, 6.0, 4.0, 45.0]]), labels=torch.tensor([1]))
        with pytest.raises(ValueError, match="non-positive width"):
            r18(_images(), bad)
        bad[0] = dict(boxes=torch.tensor([[5.0, 6.0, 40.0, 45.0]]), labels=torch.tensor([4]))
        with pytest.raises(ValueError, match=r"1\.\.3"):
            r18(_images(), bad)
        bad[0] = dict(boxes=torch.tensor([5.0, 6.0, 40.0, 45.0]), labels=torch.tensor([1]))
        with pytest.raises(ValueError, match=r"\[N, 4\]"):
            r18(_images(), bad)
    finally:
        r18.eval()


@pytest.mark.parametrize("overrides,match", [
    ({"MODEL": {"FCOS": {"IOU_LOSS_TYPE": "l1"}}}, "IOU_LOSS_TYPE"),
    ({"MODEL": {"FCOS": {"NUM_CLASSES": 1}}}, "NUM_CLASSES"),
    ({"MODEL": {"FCOS": {"FPN_STRIDES": [4, 8, 16]}}}, "FPN_STRIDES"),
    ({"MODEL": {"FCOS": {"SCORE_TH_ON": "ctr"}}}, "SCORE_TH_ON"),
    ({"MODEL": {"FCOS": {"LOCATION_OFFSET": "half"}}}, "LOCATION_OFFSET"),
    ({"MODEL": {"FPN": {"USE_GN": True}}}, "USE_GN"),
    ({"MODEL": {"BACKBONE": {"CONV_BODY": "VGG-16"}}}, "CONV_BODY"),
    ({"INPUT": {"PIXEL_STD": [1.0, 0.0, 1.0]}}, "PIXEL_STD"),
    ({"INPUT": {"MIN_SIZE_RANGE_TRAIN": (80, 64)}}, "MIN_SIZE_RANGE_TRAIN"),
    ({"TEST": {"BBOX_AUG": {"ENABLED": True}}}, "BBOX_AUG"),  # used to be ignored without a word
])
def test_bad_config_raises_clear_errors(overrides, match):
    cfg = _cfg()
    for section, values in overrides.items():
        for key, value in values.items():
            node = cfg[section][key]
            if isinstance(value, dict):
                node.update(value)
            else:
                cfg[section][key] = value
    with pytest.raises((ValueError, KeyError), match=match):
        build_detector(cfg)


@pytest.mark.parametrize("range_train, expected", [
    ((-1, -1), (64, 80)),  # FCOS's default: MIN_SIZE_TRAIN as given
    ((60, 64), (60, 61, 62, 63, 64)),  # FCOS's build_transforms: range(lo, hi + 1), over MIN_SIZE_TRAIN
])
def test_min_size_range_train_gives_every_size_like_fcos(range_train, expected):
    """INPUT.MIN_SIZE_RANGE_TRAIN (FCOS's multi-scale configs) used to be ignored without a word."""
    cfg = _cfg()
    cfg.INPUT.MIN_SIZE_RANGE_TRAIN = range_train
    assert build_detector(cfg).transform.min_size_train == expected
