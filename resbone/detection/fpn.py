"""Feature Pyramid Network for FCOS / RetinaNet: P3-P5 from C3-C5, then P6 and P7.

Anchors: FCOS's `fcos_core/modeling/backbone/fpn.py` (FPN + LastLevelP6P7, kaiming-uniform(a=1)
init) and torchvision's `ops/feature_pyramid_network.py` (nearest upsampling to the lateral's size,
which equals FCOS's scale_factor=2 whenever the input is padded to a multiple of 32).
Parameter names are FCOS's with `fpn_inner{2,3,4}` -> `inner_blocks.{0,1,2}`, `fpn_layer{2,3,4}` ->
`layer_blocks.{0,1,2}`, `top_blocks.p6/p7` -> `p6/p7` (mapped by resbone.convert.maskrcnn).
Reference tests: tests/detection/test_fpn.py (against torchvision's FeaturePyramidNetwork).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPN"]


def _kaiming_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.zeros_(conv.bias)
    return conv


class FPN(nn.Module):
    """Top-down pyramid over backbone maps C3..C5 (any number of levels, finest first), plus the
    extra levels P6 = conv3x3/s2(P5 or C5) and P7 = conv3x3/s2(relu(P6)).

    Args:
        in_channels: channels of each backbone map, finest first (e.g. [512, 1024, 2048]).
        out_channels: channels of every pyramid level (FCOS: 256).
        num_extra_levels: 0, 1 (P6) or 2 (P6, P7).
        extra_from_c5: build P6 from the last backbone map instead of the last pyramid level
            (FCOS's MODEL.RETINANET.USE_C5; FCOS's configs set it False, torchvision uses P5).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, *,
                 num_extra_levels: int = 2, extra_from_c5: bool = False):
        super().__init__()
        in_channels = list(in_channels)
        if not in_channels or any(not isinstance(c, int) or c <= 0 for c in in_channels):
            raise ValueError(f"FPN in_channels must be a non-empty list of positive ints, got {in_channels!r}")
        if num_extra_levels not in (0, 1, 2):
            raise ValueError(f"FPN num_extra_levels must be 0, 1 or 2, got {num_extra_levels!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.extra_from_c5 = extra_from_c5
        self.inner_blocks = nn.ModuleList(_kaiming_conv(c, out_channels, 1) for c in in_channels)
        self.layer_blocks = nn.ModuleList(_kaiming_conv(out_channels, out_channels, 3) for _ in in_channels)
        if num_extra_levels >= 1:
            self.p6 = _kaiming_conv(in_channels[-1] if extra_from_c5 else out_channels, out_channels, 3, 2)
        if num_extra_levels == 2:
            self.p7 = _kaiming_conv(out_channels, out_channels, 3, 2)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.inner_blocks):
            raise ValueError(f"FPN expects {len(self.inner_blocks)} feature maps (channels "
                             f"{self.in_channels}), got {len(features)}")
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            last_inner = lateral + F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[i](last_inner))
        if hasattr(self, "p6"):
            p6 = self.p6(features[-1] if self.extra_from_c5 else results[-1])
            results.append(p6)
            if hasattr(self, "p7"):
                results.append(self.p7(F.relu(p6)))
        return results
