"""resbone's FCOS configured as torchvision's (TORCHVISION_FCOS_OVERRIDES) and loaded with torchvision
fcos_resnet50_fpn's random weights computes what torchvision computes: the same normalized batch, the
same head outputs, the same detections, the same losses and the same gradients.

Images are chosen so that the padded batch is a multiple of 128 px on both sides: torchvision derives
each level's anchor stride as padded_size // feature_size, which is the true stride only then.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import fcos_resnet50_fpn

from resbone.convert.torchvision import fcos_from_torchvision
from resbone.detection.defaults import TORCHVISION_FCOS_OVERRIDES, detector_cfg
from resbone.detection.detector import build_detector

NUM_TV_CLASSES = 5  # torchvision's logit channels; resbone C = 5, NUM_CLASSES = 6, labels shifted by 1
SIZES = dict(MIN_SIZE_TRAIN=(128,), MAX_SIZE_TRAIN=256, MIN_SIZE_TEST=128, MAX_SIZE_TEST=256)


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Random weights everywhere (biases, BN statistics, GN affine too) so that a wrong mapping or a
    wrong formula changes the outputs; head biases set so a few dozen boxes pass the 0.2 threshold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (1.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) * 0.5 + 0.75)
        head = model.head
        head.classification_head.cls_logits.bias.copy_(torch.linspace(-3.9, -3.5, NUM_TV_CLASSES))
        head.regression_head.bbox_reg.bias.copy_(torch.rand(4, generator=g) * 2 + 1)
        head.regression_head.bbox_ctrness.bias.fill_(0.5)


def build_pair():
    """torchvision's FCOS with random weights and resbone's FCOS holding the converted weights."""
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_TV_CLASSES, min_size=128,
                           max_size=256)
    _randomize(tv)
    tv.eval()
    overrides = {k: dict(v) for k, v in TORCHVISION_FCOS_OVERRIDES.items()}
    overrides["MODEL"] = {**overrides["MODEL"], "FCOS": {**overrides["MODEL"]["FCOS"],
                                                         "NUM_CLASSES": NUM_TV_CLASSES + 1}}
    overrides["INPUT"] = {**overrides["INPUT"], **SIZES}
    ours = build_detector(detector_cfg(overrides))
    missing, unexpected = ours.load_state_dict(fcos_from_torchvision(tv.state_dict()), strict=True)
    assert not missing and not unexpected
    ours.eval()
    return tv, ours


@pytest.fixture(scope="module")
def models():
    return build_pair()


def _images():
    g = torch.Generator().manual_seed(1)
    # 50x100 -> 128x256 and 80x80 -> 128x128: the batch pads to 128x256.
    return [torch.rand(3, 50, 100, generator=g), torch.rand(3, 80, 80, generator=g)]


def test_same_batch_from_transform(models):
    tv, ours = models
    images = _images()
    tv_list, _ = tv.transform(images)
    batch, sizes, _ = ours.transform(images)
    assert sizes == tv_list.image_sizes
    torch.testing.assert_close(batch, tv_list.tensors, rtol=0, atol=1e-5)


def test_same_head_outputs(models):
    tv, ours = models
    batch = tv.transform(_images())[0].tensors
    with torch.no_grad():
        tv_out = tv.head(list(tv.backbone(batch).values()))
        logits, regression, centerness = ours.forward_network(batch)

    def flat(outputs):  # [N, ch, H, W] per level -> [N, sum HW, ch], torchvision's layout
        return torch.cat([o.flatten(2) for o in outputs], dim=2).transpose(1, 2)

    scale = tv_out["cls_logits"].abs().max()
    torch.testing.assert_close(flat(logits), tv_out["cls_logits"], rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(flat(centerness), tv_out["bbox_ctrness"], rtol=0, atol=1e-5 * scale)
    # torchvision regresses in units of the anchor size (= stride); resbone in pixels.
    strides = torch.cat([torch.full((o.shape[-2] * o.shape[-1], 1), float(s))
                         for o, s in zip(regression, ours.strides)])
    torch.testing.assert_close(flat(regression) / strides, tv_out["bbox_regression"], rtol=1e-4, atol=1e-4)


def test_same_detections(models):
    tv, ours = models
    images = _images()
    with torch.no_grad():
        expected = tv(images)
        got = ours(images)
    for e, o in zip(expected, got):
        assert 10 <= len(e["boxes"]) < 100, "the random head should give some detections, fewer than the cap"
        assert len(o["boxes"]) == len(e["boxes"])
        torch.testing.assert_close(o["scores"], e["scores"], rtol=0, atol=1e-5)
        torch.testing.assert_close(o["boxes"], e["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(o["labels"], e["labels"] + 1)  # resbone labels count from 1


@pytest.mark.slow  # forward + backward of two R-50 detectors
def test_same_losses_and_gradients(models):
    tv, ours = models
    images = _images()
    # Boxes in input pixels; resized (x2.56, x1.6) they reach levels P3-P5. Labels are tv channels.
    targets = [dict(boxes=torch.tensor([[4.3, 6.1, 40.7, 30.2], [20.2, 2.5, 97.1, 49.3], [1.5, 1.2, 98.6, 48.9]]),
                    labels=torch.tensor([1, 4, 0])),
               dict(boxes=torch.tensor([[10.4, 20.3, 30.2, 35.7], [5.5, 3.3, 78.1, 77.2]]),
                    labels=torch.tensor([2, 3]))]
    tv.train()
    for m in tv.modules():  # resbone's backbone is FrozenBN: compare against BN in eval mode
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    ours.train()
    try:
        tv.zero_grad()
        ours.zero_grad()
        tv_losses = tv(images, [dict(t) for t in targets])
        our_losses = ours(images, [dict(boxes=t["boxes"], labels=t["labels"] + 1) for t in targets])
        sum(tv_losses.values()).backward()
        sum(our_losses.values()).backward()
    finally:
        tv.eval()
        ours.eval()
    for tv_name, our_name in (("classification", "loss_cls"), ("bbox_regression", "loss_reg"),
                              ("bbox_ctrness", "loss_centerness")):
        torch.testing.assert_close(our_losses[our_name], tv_losses[tv_name], rtol=1e-4, atol=1e-6)
    tv_params = dict(tv.named_parameters())
    for tv_name, our_name in (("head.classification_head.cls_logits.weight", "head.cls_logits.weight"),
                              ("head.regression_head.bbox_reg.weight", "head.bbox_pred.weight"),
                              ("head.regression_head.bbox_ctrness.bias", "head.centerness.bias"),
                              ("backbone.fpn.inner_blocks.0.0.weight", "fpn.inner_blocks.0.weight"),
                              ("backbone.body.layer4.2.conv3.weight", "backbone.layer4.2.conv3.weight")):
        expected = tv_params[tv_name].grad
        got = dict(ours.named_parameters())[our_name].grad
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
