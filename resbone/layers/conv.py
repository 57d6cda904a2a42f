"""Convolutions: the plain Conv2d and deformable convolution v1 / v2 over torchvision.ops.deform_conv2d.

Anchor: mmcv's `DeformConv2dPack` / `ModulatedDeformConv2dPack` (mmcv/ops/deform_conv.py,
modulated_deform_conv.py): the layer owns its `weight` (and optional `bias`) and a `conv_offset` conv
that predicts the offsets (and, for v2, the masks) from the layer's own input. `conv_offset` is
zero-initialised, so a fresh deformable conv computes exactly the plain conv it replaces (v2: times
sigmoid(0) = 0.5, as in mmcv). The sampling kernel is torchvision's, so no compiled extension of ours.
The offset layout is the one mmcv, maskrcnn-benchmark and torchvision share: per deformable group,
per kernel tap, (dy, dx); v2 splits `conv_offset`'s output in three equal chunks (o1, o2, mask).

`Conv2d` is torch's own: since torch 1.x it accepts an empty batch (N=0), which maskrcnn-benchmark's
wrapper existed for; the deformable convs here accept one too.

Reference test: tests/layers/test_conv.py (zero offsets == nn.Conv2d, v2 == 0.5 * nn.Conv2d,
gradients reach conv_offset, a hand-shifted offset equals a shifted input, empty batches, errors).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from resbone.utils.checks import check_int

__all__ = ["Conv2d", "DeformConv2dPack", "ModulatedDeformConv2dPack", "build_conv2d", "check_dcn", "DCN_TYPES"]

# torch's nn.Conv2d already handles N=0 inputs (the reason maskrcnn-benchmark wrapped it).
Conv2d = nn.Conv2d

_PLAIN_TYPES = ("Conv", "Conv2d")
DCN_TYPES = ("DCN", "DCNv2")
_DCN_KEYS = ("type", "deform_groups", "fallback_on_stride")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _DeformConvBase(nn.Module):
    """Shared parameters of DCNv1 / DCNv2: `weight`, optional `bias`, `conv_offset`."""

    offset_chunks = 2  # 2 (dy, dx) for v1, 3 (dy, dx, mask) for v2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, deform_groups: int = 1,
                 bias: bool = False) -> None:
        super().__init__()
        for name, value, by, divisor in (("in_channels", in_channels, "groups", groups),
                                         ("out_channels", out_channels, "groups", groups),
                                         ("in_channels", in_channels, "deform_groups", deform_groups)):
            if value % divisor != 0:
                raise ValueError(f"{type(self).__name__}: {name}={value} is not divisible by {by}={divisor}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(in_channels, self.offset_chunks * deform_groups * taps, self.kernel_size,
                                     stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's default init for the main weight (mmcv uses uniform(-1/sqrt(n), 1/sqrt(n)); ResNet
        # re-initialises it with Kaiming anyway).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero offsets (and masks = sigmoid(0)): the layer starts as the plain conv (mmcv init_offset)."""
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def _offset_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.conv_offset(x), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self._offset_and_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"deform_groups={self.deform_groups}, bias={self.bias is not None}")


class DeformConv2dPack(_DeformConvBase):
    """Deformable convolution v1 (Dai et al. 2017) with its own offset predictor, as mmcv's `DCN`."""

    offset_chunks = 2


class ModulatedDeformConv2dPack(_DeformConvBase):
    """Modulated deformable convolution v2 (Zhu et al. 2019), as mmcv's `DCNv2`: mask = sigmoid(last third)."""

    offset_chunks = 3

    def _offset_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        o1, o2, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(mask)


def check_dcn(dcn: Mapping[str, Any]) -> tuple[str, int, bool]:
    """Validate an mmdet dcn dict once at a public boundary; returns (type, deform_groups, fallback_on_stride)."""
    if not isinstance(dcn, Mapping):
        raise TypeError(f"dcn must be None or a dict like dict(type='DCN', deform_groups=1), got {dcn!r}")
    unknown = sorted(set(dcn) - set(_DCN_KEYS))
    if unknown:
        raise KeyError(f"dcn has unknown key(s) {unknown}; allowed keys are {list(_DCN_KEYS)}")
    kind = dcn.get("type", "DCN")
    if kind not in DCN_TYPES + _PLAIN_TYPES:
        raise ValueError(f"dcn type {kind!r} is not supported; allowed types are {list(DCN_TYPES + _PLAIN_TYPES)}")
    deform_groups = dcn.get("deform_groups", 1)
    return kind, check_int("dcn deform_groups", deform_groups), bool(dcn.get("fallback_on_stride", False))


def build_conv2d(dcn: Mapping[str, Any] | None, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], *, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
                 bias: bool = False) -> nn.Module:
    """A conv layer from an mmdet `dcn` config: None -> nn.Conv2d, dict(type='DCN'|'DCNv2') -> deformable.

    `fallback_on_stride=True` builds a plain conv where stride > 1 (the flag's intent in mmdet v1; mmdet v2+
    reads it as "never deformable", which no released config relies on). `dict(type='Conv')` is a plain conv.
    """
    if dcn is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
    kind, deform_groups, fallback_on_stride = check_dcn(dcn)
    if kind in _PLAIN_TYPES or (fallback_on_stride and max(_pair(stride)) > 1):
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
    cls = DeformConv2dPack if kind == "DCN" else ModulatedDeformConv2dPack
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
               groups=groups, deform_groups=deform_groups, bias=bias)
