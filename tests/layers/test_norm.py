"""build_norm and IBN against hand-computed normalisation and torch's own layers."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from resbone.layers.norm import IBN, build_norm, check_norm_cfg, is_batch_norm


def test_ibn_normalises_the_first_half_per_instance_and_the_rest_per_batch():
    torch.manual_seed(0)
    ibn = IBN(8, ratio=0.5).train()
    with torch.no_grad():
        ibn.IN.weight.uniform_(0.5, 1.5), ibn.IN.bias.uniform_(-1, 1)
        ibn.BN.weight.uniform_(0.5, 1.5), ibn.BN.bias.uniform_(-1, 1)
    x = torch.randn(3, 8, 5, 6) * 3 + 1
    out = ibn(x)
    first, rest = x[:, :4], x[:, 4:]
    # instance norm: statistics over H, W of each sample and channel (biased variance)
    mean, var = first.mean((2, 3), keepdim=True), first.var((2, 3), unbiased=False, keepdim=True)
    expected_in = (first - mean) / torch.sqrt(var + 1e-5) * ibn.IN.weight.view(1, -1, 1, 1) \
        + ibn.IN.bias.view(1, -1, 1, 1)
    # batch norm in training: statistics over N, H, W of each channel
    mean, var = rest.mean((0, 2, 3), keepdim=True), rest.var((0, 2, 3), unbiased=False, keepdim=True)
    expected_bn = (rest - mean) / torch.sqrt(var + 1e-5) * ibn.BN.weight.view(1, -1, 1, 1) \
        + ibn.BN.bias.view(1, -1, 1, 1)
    assert torch.allclose(out[:, :4], expected_in, atol=1e-5)
    assert torch.allclose(out[:, 4:], expected_bn, atol=1e-5)
    assert sorted(ibn.state_dict())[:2] == ["BN.bias", "BN.num_batches_tracked"]
    assert "IN.weight" in ibn.state_dict()


@pytest.mark.parametrize("cfg,cls", [
    (None, nn.BatchNorm2d), ("BN", nn.BatchNorm2d), (dict(type="SyncBN"), nn.SyncBatchNorm),
    (dict(type="GN", num_groups=4), nn.GroupNorm), (dict(type="FrozenBN"), FrozenBatchNorm2d),
    (dict(type="IN"), nn.InstanceNorm2d), (dict(type="IBN"), IBN), (dict(type="BN2d"), nn.BatchNorm2d),
])
def test_build_norm_makes_the_named_layer(cfg, cls):
    layer = build_norm(cfg, 16)
    assert type(layer) is cls


def test_build_norm_options_and_requires_grad():
    layer = build_norm(dict(type="BN", eps=1e-3, momentum=0.03, requires_grad=False), 8)
    assert layer.eps == 1e-3 and layer.momentum == 0.03
    assert not any(p.requires_grad for p in layer.parameters())
    assert build_norm(dict(type="GN", num_groups=2), 8).num_groups == 2
    assert build_norm(lambda c: nn.GroupNorm(1, c), 8).num_groups == 1
    assert is_batch_norm(build_norm("SyncBN", 8)) and not is_batch_norm(build_norm("GN", 32))


def test_frozen_bn_equals_batch_norm_in_eval():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    frozen = build_norm("FrozenBN", 6)
    frozen.load_state_dict(bn.state_dict())  # drops num_batches_tracked, as FCOS/detectron2 files lack it
    x = torch.randn(2, 6, 4, 4)
    assert torch.allclose(frozen(x), bn(x), atol=1e-6)
    assert "num_batches_tracked" not in frozen.state_dict()


@pytest.mark.parametrize("cfg,error,words", [
    (dict(type="LN"), ValueError, ["'LN'", "BN", "GN"]),
    (dict(num_groups=2), KeyError, ["no 'type'"]),
    (3, TypeError, ["int", "3"]),
    (dict(type="GN", num_groups=0), ValueError, ["num_groups", "0"]),
    (dict(type="BN", groups=2), KeyError, ["groups", "momentum"]),
])
def test_bad_norm_configs_raise_clear_errors(cfg, error, words):
    with pytest.raises(error) as info:
        check_norm_cfg(cfg)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_group_norm_with_indivisible_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="num_groups=32 cannot normalise 24 channels"):
        build_norm(dict(type="GN"), 24)


def test_ibn_ratio_is_checked():
    with pytest.raises(ValueError, match="ratio"):
        IBN(8, ratio=1.5)
