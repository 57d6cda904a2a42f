"""resbone.layers.conv: deformable convs against torch's own conv (F.conv2d), offsets/masks by hand, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resbone.layers.conv import DeformConv2dPack, ModulatedDeformConv2dPack, build_conv2d

TOL = 1e-5


def _plain_twin(layer: nn.Module) -> nn.Conv2d:
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None)
    conv.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("conv_offset")})
    return conv


@pytest.mark.parametrize("stride,dilation,groups,deform_groups", [(1, 1, 1, 1), (2, 1, 2, 1), (1, 2, 1, 2),
                                                                   (2, 2, 4, 2)])
def test_dcn_v1_with_zero_offsets_equals_the_plain_conv(stride, dilation, groups, deform_groups, rng):
    layer = build_conv2d(dict(type="DCN", deform_groups=deform_groups), 8, 16, 3, stride=stride, padding=dilation,
                         dilation=dilation, groups=groups)
    assert isinstance(layer, DeformConv2dPack)
    x = torch.randn(2, 8, 13, 11, generator=rng)
    assert torch.count_nonzero(layer.conv_offset.weight) == 0  # mmcv's init_offset: zero-initialised
    torch.testing.assert_close(layer(x), _plain_twin(layer)(x), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("bias", [False, True])
def test_dcn_v2_at_init_equals_half_the_plain_conv_and_a_saturated_mask_the_conv(bias, rng):
    layer = build_conv2d(dict(type="DCNv2"), 8, 8, 3, stride=1, padding=1, bias=bias)
    assert isinstance(layer, ModulatedDeformConv2dPack)
    assert layer.conv_offset.out_channels == 3 * 9  # dy, dx and mask per tap, as mmcv
    if bias:
        nn.init.normal_(layer.bias)
    x = torch.randn(2, 8, 10, 10, generator=rng)
    plain = _plain_twin(layer)
    bias_term = 0 if layer.bias is None else layer.bias.view(1, -1, 1, 1)
    # mask = sigmoid(0) = 0.5 scales the sampled values, not the bias
    torch.testing.assert_close(layer(x), 0.5 * (plain(x) - bias_term) + bias_term, atol=TOL, rtol=TOL)
    with torch.no_grad():
        layer.conv_offset.bias[18:] = 30.0  # the last third is the mask logit: sigmoid(30) == 1 in float32
    torch.testing.assert_close(layer(x), plain(x), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("kind", ["DCN", "DCNv2"])
@pytest.mark.parametrize("axis", ["dy", "dx"])
def test_offset_layout_is_dy_dx_per_tap_a_unit_offset_shifts_the_sampling(kind, axis, rng):
    layer = build_conv2d(dict(type=kind), 4, 6, 3, stride=1, padding=1)
    with torch.no_grad():
        layer.conv_offset.bias[(0 if axis == "dy" else 1):18:2] = 1.0  # +1 along one axis for every tap
        if kind == "DCNv2":
            layer.conv_offset.bias[18:] = 30.0
    x = torch.randn(1, 4, 9, 7, generator=rng)
    # output j, tap k samples j + k - 1 + 1: the plain conv over x padded 0 before and 2 after on that axis
    expected = F.conv2d(F.pad(x, (1, 1, 0, 2) if axis == "dy" else (0, 2, 1, 1)), layer.weight)
    torch.testing.assert_close(layer(x), expected, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("kind", ["DCN", "DCNv2"])
def test_gradients_reach_the_offset_conv(kind, rng):
    layer = build_conv2d(dict(type=kind), 4, 4, 3, stride=1, padding=1)
    x = torch.randn(2, 4, 8, 8, generator=rng)
    layer(x).square().sum().backward()
    assert layer.conv_offset.weight.grad is not None and layer.conv_offset.weight.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0


def test_offset_conv_follows_stride_dilation_and_init_weights_rezeroes_it():
    layer = build_conv2d(dict(type="DCN", deform_groups=2), 8, 8, 3, stride=2, padding=2, dilation=2)
    assert layer.conv_offset.stride == (2, 2) and layer.conv_offset.dilation == (2, 2)
    assert layer.conv_offset.out_channels == 2 * 2 * 9
    nn.init.normal_(layer.conv_offset.weight)
    layer.init_weights()  # ResNet calls this after its generic Kaiming init
    assert torch.count_nonzero(layer.conv_offset.weight) == 0 and torch.count_nonzero(layer.conv_offset.bias) == 0


@pytest.mark.parametrize("dcn", [None, dict(type="DCN"), dict(type="DCNv2")])
def test_every_conv_accepts_an_empty_batch(dcn):
    layer = build_conv2d(dcn, 4, 8, 3, stride=2, padding=1)
    x = torch.randn(0, 4, 10, 10, requires_grad=True)
    out = layer(x)
    assert out.shape == (0, 8, 5, 5)
    out.sum().backward()


def test_plain_cases_give_nn_conv2d():
    assert type(build_conv2d(None, 4, 4, 3, stride=1, padding=1)) is nn.Conv2d
    assert type(build_conv2d(dict(type="Conv"), 4, 4, 3, stride=1, padding=1)) is nn.Conv2d
    # fallback_on_stride: a strided layer stays a plain conv, a stride-1 layer becomes deformable
    assert type(build_conv2d(dict(type="DCN", fallback_on_stride=True), 4, 4, 3, stride=2, padding=1)) is nn.Conv2d
    assert isinstance(build_conv2d(dict(type="DCN", fallback_on_stride=True), 4, 4, 3, stride=1, padding=1),
                      DeformConv2dPack)
    conv = build_conv2d(None, 4, 8, 3, stride=2, padding=2, dilation=2, groups=2, bias=True)
    assert (conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None) == \
        ((2, 2), (2, 2), (2, 2), 2, True)


@pytest.mark.parametrize("dcn,error,words", [
    (dict(type="DCNv3"), ValueError, ["'DCNv3'", "DCNv2"]),
    (dict(type="DCN", groups=2), KeyError, ["groups", "deform_groups"]),
    (dict(type="DCN", deform_groups=0), ValueError, ["deform_groups", "0"]),
    ("DCN", TypeError, ["'DCN'", "dict"]),
])
def test_bad_dcn_configs_name_the_value_and_the_allowed_ones(dcn, error, words):
    with pytest.raises(error) as info:
        build_conv2d(dcn, 4, 4, 3, stride=1, padding=1)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_channels_not_divisible_by_deform_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="in_channels=6 is not divisible by deform_groups=4"):
        build_conv2d(dict(type="DCN", deform_groups=4), 6, 8, 3, stride=1, padding=1)
