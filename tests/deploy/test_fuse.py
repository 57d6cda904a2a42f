"""Folding norms into convs (resbone.deploy.fuse) against the unfolded model and torchvision's."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from resbone import create_model
from resbone.deploy import fuse_conv_norm
from tests.helpers import randomize_norms
from tests.helpers.fcos import SIZE, tiny_fcos

NORMS = (nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d)


@pytest.mark.parametrize("name,kwargs", [("resnet18", {}), ("resnet50d", {}),
                                         ("resnet50", dict(norm_cfg=dict(type="FrozenBN")))])
def test_fused_model_equals_the_unfused_one_and_has_no_norms_left(name, kwargs):
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, **kwargs)).eval()
    fused = fuse_conv_norm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4
    assert not any(isinstance(m, NORMS) for m in fused.modules())
    assert any(isinstance(m, NORMS) for m in model.modules())  # the original is untouched


def test_fused_model_equals_torchvision():
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18(weights=None)).eval()
    ours = create_model("resnet18")
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), fuse_conv_norm(ours)(x)
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4


def test_fused_detector_gives_the_same_head_outputs_with_its_frozen_norms_folded():
    model = tiny_fcos()
    fused = fuse_conv_norm(model)
    assert any(isinstance(m, NORMS) for m in model.backbone.modules())
    assert not any(isinstance(m, NORMS) for m in fused.modules())
    batch = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model.forward_network(batch), fused.forward_network(batch)
    for level_expected, level_got in zip(sum(expected, []), sum(got, [])):
        assert (level_got - level_expected).abs().max() / level_expected.abs().max() < 1e-4


def test_fuse_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        fuse_conv_norm("resnet18")


def test_a_frozen_norm_is_folded_on_its_own_device_and_dtype():
    # found on a GPU: the frozen norm's BatchNorm copy was made on the CPU, and folding it into a CUDA conv
    # failed inside torch; the meta device and float64 stand in for CUDA here (the CPU-only suite)
    torch.manual_seed(0)
    model = randomize_norms(create_model("resnet18", norm_cfg=dict(type="FrozenBN"))).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected, got = model(x), fuse_conv_norm(model)(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    on_meta = fuse_conv_norm(create_model("resnet18", norm_cfg=dict(type="FrozenBN")).to("meta"))
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
