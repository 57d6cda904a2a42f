"""Independent references: timm and torchvision models with random weights (random BN statistics too),
converted into resbone's models, compute the same outputs; converted back, their state dicts are
identical (torchvision's FCOS too: backbone, FPN and head).
Caffe2's affine BN, folded from a torchvision model's BN, computes what the BN did."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from resbone import create_model
from resbone.convert import convert_state_dict, load_checkpoint
from resbone.detection.fcos import FCOSHead
from resbone.detection.fpn import FPN
from resbone.models.resnet import ResNet
from tests.helpers.checkpoints import EPS, assert_identical
from tests.helpers.references import TOL, relative_error


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine and statistics, so that a swapped or misplaced norm changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) * 0.5 + 0.75)
    return model.eval()



SHALLOW = ([1, 1, 1, 1], (1, 1, 1, 1))  # timm `layers`, resbone `stage_blocks`: names do not depend on depth
FULL = (None, None)  # resnet50-size, as the names are registered (two of these, to keep the suite lean)
REFERENCES = [
    ("timm", "resnet50", "resnet50", "torchvision", SHALLOW),
    ("timm", "resnet50d", "resnet50d", "timm", FULL),
    ("timm", "seresnet50", "seresnet50", "resbone", SHALLOW),
    ("timm", "resnext50_32x4d", "resnext50_32x4d", "torchvision", SHALLOW),
    ("timm", "mobilenetv2_100", "mobilenetv2_100", "timm", FULL),
    ("torchvision", "resnet50", "resnet50", "torchvision", FULL),
    ("torchvision", "mobilenet_v2", "mobilenet_v2", "torchvision", FULL),
]


@pytest.mark.parametrize("library,reference_name,resbone_name,dialect,depth", REFERENCES,
                         ids=[f"{r[0]}-{r[1]}" for r in REFERENCES])
def test_reference_weights_give_the_same_outputs_and_convert_back(library, reference_name, resbone_name, dialect,
                                                                  depth):
    torch.manual_seed(0)
    timm_layers, stage_blocks = depth
    if library == "timm":
        reference = timm.create_model(reference_name, pretrained=False,
                                      **({} if timm_layers is None else {"layers": timm_layers}))
    else:
        reference = getattr(torchvision.models, reference_name)(weights=None)
    _randomize_norms(reference)
    theirs = reference.state_dict()
    ours = create_model(resbone_name, **({} if stage_blocks is None else {"stage_blocks": stage_blocks})).eval()
    report = load_checkpoint(ours, theirs)  # dialect detected, strict
    assert report.ok and report.dialect == dialect and len(report.loaded) == len(theirs)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(ours(x), reference(x)) < TOL
    assert_identical(convert_state_dict(ours.state_dict(), "resbone", library), theirs)


def test_caffe2_folded_bn_computes_what_the_bn_computed():
    """torchvision resnet18 (random BN statistics) -> Caffe2 blobs (statistics folded into s, b) ->
    resbone ResNet with FrozenBN (mean 0, var 1 - eps): same logits."""
    torch.manual_seed(0)
    reference = _randomize_norms(torchvision.models.resnet18(weights=None))
    blobs = convert_state_dict(reference.state_dict(), "torchvision", "caffe2")
    assert "res2_0_branch2a_bn_s" in blobs and not any("running" in k for k in blobs)
    ours = ResNet(18, norm_cfg="FrozenBN", num_classes=1000).eval()
    report = load_checkpoint(ours, blobs)
    assert report.dialect == "caffe2" and report.ok
    assert torch.equal(ours.layer1[0].bn1.running_var, torch.full((64,), 1.0) - EPS)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(ours(x), reference(x)) < TOL


class _NativeDetector(nn.Module):
    """resbone's FCOS parts (backbone, FPN, head) under the native detector names."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = ResNet(18, num_classes=None, out_indices=(1, 2, 3))
        self.fpn = FPN(self.backbone.out_channels, 64)
        self.head = FCOSHead(64, num_classes, centerness_on_reg=True, norm_reg_targets=True)

    def forward(self, x):
        return self.head(self.fpn(self.backbone(x)))


def test_torchvision_fcos_backbone_fpn_head_give_the_same_outputs():
    """torchvision FCOS (resnet18 body, FPN with P6/P7 from P5, head; random weights and BN statistics)
    -> fcos_from_torchvision -> resbone ResNet + FPN + FCOSHead: same class logits, centerness and boxes
    (resbone regresses in pixels, torchvision in strides); fcos_to_torchvision restores the state dict."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    body = _randomize_norms(torchvision.models.resnet18(weights=None))
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], 64,
                               extra_blocks=LastLevelP6P7(64, 64))  # fcos_resnet50_fpn's, at width 64
    reference = FCOS(backbone, num_classes=3).eval()
    with torch.no_grad():
        for module in reference.head.modules():
            if isinstance(module, (nn.Conv2d, nn.GroupNorm)) and module.bias is not None:
                module.bias.normal_(0, 0.1)  # torchvision initialises them to constants
    ours = _NativeDetector(3).eval()
    report = load_checkpoint(ours, reference.state_dict())
    assert report.ok and report.dialect == "torchvision"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.head(list(reference.backbone(x).values()))
        logits, regression, centerness = ours(x)

    def flat(outputs):  # per level [N, C, H, W] -> [N, sum HW, C], torchvision's layout
        return torch.cat([o.flatten(2) for o in outputs], dim=2).transpose(1, 2)

    strides = torch.cat([torch.full((o.shape[-2] * o.shape[-1], 1), float(s))
                         for o, s in zip(regression, ours.head.strides)])
    assert relative_error(flat(logits), expected["cls_logits"]) < TOL
    assert relative_error(flat(centerness), expected["bbox_ctrness"]) < TOL
    assert relative_error(flat(regression) / strides, expected["bbox_regression"]) < TOL
    assert_identical(convert_state_dict(ours.state_dict(), "resbone", "torchvision"), reference.state_dict())
