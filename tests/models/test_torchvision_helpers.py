"""torchvision's own detection and segmentation helpers on resbone networks, against torchvision's networks with
the same weights through the same helper: _resnet_fpn_extractor (behind its Faster / Mask R-CNN, RetinaNet and
FCOS builders; it reads `inplanes`, the layer names, and freezes by parameter name) gives equal FPN maps and the
same trainable parameters, and a Faster R-CNN built on it trains; _mobilenet_extractor (reads `features`,
`_is_cn`, `out_channels`); the segmentation builders' IntermediateLayerGetter (DeepLabV3 / FCN, dilated)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.segmentation.deeplabv3 import _deeplabv3_resnet
from torchvision.models.segmentation.fcn import _fcn_resnet
from torchvision.ops.misc import FrozenBatchNorm2d

from resbone import create_model
from tests.helpers import randomize_norms

TOL = dict(atol=1e-4, rtol=1e-4)


def _pair(name: str, **kwargs):
    """torchvision's network with random weights and norm statistics, and resbone's loaded with them strictly."""
    torch.manual_seed(0)
    reference = randomize_norms(getattr(torchvision.models, name)(**kwargs)).eval()
    ours = create_model(name, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours.eval()


def _assert_same_outputs(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], **TOL, msg=key)


def test_resnet_fpn_extractor_gives_torchvisions_maps_and_freezing():
    reference, ours = _pair("resnet50", norm_layer=FrozenBatchNorm2d)  # as resnet_fpn_backbone builds it
    assert ours.inplanes == reference.inplanes == 2048
    theirs_fpn = _resnet_fpn_extractor(reference, trainable_layers=3)
    ours_fpn = _resnet_fpn_extractor(ours, trainable_layers=3)
    ours_fpn.load_state_dict(theirs_fpn.state_dict(), strict=True)  # the same FPN weights too
    trainable = [n for n, p in ours_fpn.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in theirs_fpn.named_parameters() if p.requires_grad]
    assert not any(n.startswith(("body.conv1", "body.layer1")) for n in trainable)
    x = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _assert_same_outputs(ours_fpn.eval()(x), theirs_fpn.eval()(x))


def test_faster_rcnn_trains_on_a_resbone_body():
    ours = create_model("resnet18", norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(ours, trainable_layers=3), num_classes=3,
                       min_size=96, max_size=128, rpn_batch_size_per_image=32, box_batch_size_per_image=32)
    images = [torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(2))]
    targets = [dict(boxes=torch.tensor([[10.0, 20.0, 60.0, 80.0]]), labels=torch.tensor([1]))]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    layer4 = model.backbone.body.layer4[0].conv1.weight.detach().clone()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.backbone.body.layer4[0].conv1.weight, layer4)  # the body learns
    assert model.backbone.body.conv1.weight.grad is None  # frozen by name, as torchvision's
    detections = model.eval()(images)
    assert set(detections[0]) == {"boxes", "labels", "scores"}


def test_mobilenet_extractor_gives_torchvisions_fpn_maps():
    reference, ours = _pair("mobilenet_v2")
    theirs_fpn = _mobilenet_extractor(reference, fpn=True, trainable_layers=3)
    ours_fpn = _mobilenet_extractor(ours, fpn=True, trainable_layers=3)
    ours_fpn.load_state_dict(theirs_fpn.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _assert_same_outputs(ours_fpn.eval()(x), theirs_fpn.eval()(x))


@pytest.mark.parametrize("builder", [_deeplabv3_resnet, _fcn_resnet])
def test_segmentation_builders_take_a_dilated_resbone_resnet(builder):
    reference, ours = _pair("resnet50", replace_stride_with_dilation=[False, True, True])  # as torchvision builds
    torch.manual_seed(3)
    theirs = builder(reference, num_classes=4, aux=True).eval()
    mine = builder(ours, num_classes=4, aux=True).eval()
    mine.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _assert_same_outputs(mine(x), theirs(x))
