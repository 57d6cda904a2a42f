"""MobileNetV2 (Sandler et al. 2018): torchvision's network, keys and init, plus a detection-backbone mode.

Anchors: torchvision `models/mobilenetv2.py` (classifier mode: `features.0` .. `features.18`,
`classifier.1`, width_mult / round_nearest through `_make_divisible`, the same init, so torchvision
checkpoints load with strict=True and give equal outputs), mmdetection `backbones/mobilenet_v2.py`
(backbone mode: out_indices over its eight stages, frozen_stages, norm_eval).
Stages (mmdet's numbering): 0 = t1 c16 (features.1), 1 = c24 (features.2-3, stride 4), 2 = c32
(features.4-6, stride 8), 3 = c64 (7-10, 16), 4 = c96 (11-13, 16), 5 = c160 (14-16, 32), 6 = c320
(17, 32), 7 = the 1x1 conv to 1280 (18, 32); the stem is features.0. FCOS's MNV2 body returns
features 3/6/13/17 = stages (1, 2, 4, 6). A backbone builds features only up to its last output, so
every parameter it holds is used (DDP without find_unused_parameters); keys stay torchvision's.

Reference test: tests/models/test_mobilenetv2.py (torchvision mobilenet_v2 width 1.0 and 0.5: strict
load, equal logits; timm mobilenetv2_100 weights copied, equal logits; backbone strides, freezing).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn

from resbone.layers.norm import NormConfig, build_norm, check_norm_cfg
from resbone.models.base import FreezableBackbone, pretrained_cfg
from resbone.models.registry import register_model

__all__ = ["InvertedResidual", "MobileNetV2", "make_divisible", "mobilenet_v2"]

# t (expansion), c (channels), n (blocks), s (stride of the first block): the paper's Table 2.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
NUM_STAGES = len(INVERTED_RESIDUAL_SETTING) + 1  # + the final 1x1 conv, as mmdet counts


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """The TF-slim rule torchvision uses: nearest multiple of divisor, never more than 10% below value."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _conv_norm_relu6(in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1,
                     groups: int = 1, norm_cfg: NormConfig = None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation layout: (conv, norm, ReLU6) as indices 0, 1, 2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                  groups=groups, bias=False),
        build_norm(norm_cfg, out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, linear projection (1x1); identity shortcut when shapes allow."""

    def __init__(self, inp: int, oup: int, *, stride: int, expand_ratio: int, norm_cfg: NormConfig = None) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_norm_relu6(inp, hidden_dim, kernel_size=1, norm_cfg=norm_cfg))
        layers += [_conv_norm_relu6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_cfg=norm_cfg),
                   nn.Conv2d(hidden_dim, oup, 1, bias=False), build_norm(norm_cfg, oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")


class MobileNetV2(FreezableBackbone):
    """torchvision's MobileNetV2 (num_classes > 0) or a backbone returning the out_indices stage maps.

    `unbuilt_key(key)` tells a checkpoint loader which `features.N` keys a truncated backbone leaves out.

    num_classes None/0: backbone; out_indices index mmdet's eight stages (default (1, 2, 4, 7), strides
    4/8/16/32); frozen_stages=k freezes the stem and stages 0..k-1 (0: the stem only) in eval mode, and
    train() re-applies it; norm_eval keeps every BatchNorm in eval mode.
    """

    def __init__(self, *, num_classes: int | None = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, out_indices: Sequence[int] = (1, 2, 4, 7), frozen_stages: int = -1,
                 norm_cfg: NormConfig = None, norm_eval: bool = False, with_cp: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__()
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 0):
            raise ValueError(f"num_classes must be None, 0 (backbone) or a positive int, got {num_classes!r}")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
            raise ValueError(f"width_mult must be a positive number (1.0 = the paper's width), got {width_mult!r}")
        _check_int("round_nearest", round_nearest, 1, 1 << 16)
        _check_int("in_channels", in_channels, 1, 1 << 16)
        _check_int("frozen_stages", frozen_stages, -1, NUM_STAGES)
        check_norm_cfg(norm_cfg)
        self.num_classes = num_classes or 0
        if self.num_classes:
            out_indices = tuple(range(NUM_STAGES))
        elif isinstance(out_indices, int) or not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be a sequence of stage indices in 0..{NUM_STAGES - 1}, "
                            f"got {out_indices!r}")
        out_indices = tuple(out_indices)
        if not out_indices or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < NUM_STAGES
                                  for i in out_indices) or list(out_indices) != sorted(set(out_indices)):
            raise ValueError(f"out_indices must be distinct, increasing stage indices in 0..{NUM_STAGES - 1} "
                             f"(1 = stride 4, 2 = stride 8, 4 = stride 16, 7 = stride 32), got {out_indices!r}")
        self.out_indices, self.frozen_stages, self.norm_eval = out_indices, frozen_stages, norm_eval
        self.with_cp, self.in_channels, self.width_mult = with_cp, in_channels, width_mult

        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        last_stage = NUM_STAGES - 1 if self.num_classes else max(out_indices)
        features: list[nn.Module] = [_conv_norm_relu6(in_channels, input_channel, stride=2, norm_cfg=norm_cfg)]
        self.stage_ends: list[int] = []  # index in `features` of each stage's last module
        stage_info, stride = [], 2
        for t, c, n, s in INVERTED_RESIDUAL_SETTING[:last_stage + 1]:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, stride=s if i == 0 else 1,
                                                 expand_ratio=t, norm_cfg=norm_cfg))
                input_channel = output_channel
            stride *= s
            self.stage_ends.append(len(features) - 1)
            stage_info.append(dict(channels=output_channel, stride=stride, module=f"features.{len(features) - 1}"))
        if last_stage == NUM_STAGES - 1:
            features.append(_conv_norm_relu6(input_channel, self.last_channel, kernel_size=1, norm_cfg=norm_cfg))
            self.stage_ends.append(len(features) - 1)
            stage_info.append(dict(channels=self.last_channel, stride=stride, module=f"features.{len(features) - 1}"))
        self.features = nn.Sequential(*features)
        self.feature_info = [stage_info[i] for i in out_indices]
        self.out_channels = [info["channels"] for info in self.feature_info]
        if self.num_classes:
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, self.num_classes))
        self.pretrained_cfg = pretrained_cfg(first_conv="features.0.0", classifier="classifier.1",
                                             num_classes=self.num_classes, in_channels=in_channels)
        self._init_weights()
        self._freeze_stages()

    def unbuilt_key(self, key: str) -> bool:
        """A backbone builds `features` only up to its last out_index (so every parameter it holds gets a
        gradient); a full checkpoint's later `features.N.*` and its classifier have nowhere to go."""
        index = key.split(".", 2)[1] if key.startswith("features.") else ""
        return not self.num_classes and index.isdigit() and int(index) >= len(self.features)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        end = 0 if self.frozen_stages == 0 else self.stage_ends[min(self.frozen_stages, len(self.stage_ends)) - 1]
        return list(self.features[:end + 1])

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        """The out_indices stage maps (backbone), or the last feature map (classifier)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"MobileNetV2 expects a (N, {self.in_channels}, H, W) tensor, got {shape}")
        if not x.is_floating_point():
            raise TypeError(f"MobileNetV2 expects a floating-point tensor, got {x.dtype} (an image batch? convert "
                            f"it with x.float() and normalise it first)")
        x = self.features[0](x)
        outs, start = [], 1
        for stage, end in enumerate(self.stage_ends):
            for module in self.features[start:end + 1]:
                if self.with_cp and x.requires_grad and torch.is_grad_enabled():
                    x = cp.checkpoint(module, x, use_reentrant=False)
                else:
                    x = module(x)
            start = end + 1
            if not self.num_classes and stage in self.out_indices:
                outs.append(x)
        return x if self.num_classes else tuple(outs)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        features = self.forward_features(x)
        return self.forward_head(features) if self.num_classes else features


@register_model
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """torchvision's mobilenet_v2 (width_mult=1.0 unless overridden); num_classes=None for a backbone."""
    weights = kwargs.pop("weights", None)
    if weights is not None:
        raise ValueError(f"weights={weights!r}: resbone downloads nothing; pass checkpoint=PATH to create_model")
    kwargs.pop("progress", None)
    if "norm_layer" in kwargs:
        norm_layer = kwargs.pop("norm_layer")
        if norm_layer is not None:
            kwargs["norm_cfg"] = norm_layer
    return MobileNetV2(**kwargs)


@register_model
def mobilenetv2_100(**kwargs: Any) -> MobileNetV2:
    """timm's name for width 1.0 (its checkpoints load through resbone.convert's timm dialect)."""
    return mobilenet_v2(**dict(dict(width_mult=1.0), **kwargs))

