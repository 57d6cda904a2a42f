"""MobileNetV2 (Sandler et al. 2018): torchvision's network, keys and init, plus a detection-backbone mode.

Anchors: torchvision `models/mobilenetv2.py` (classifier mode: `features.0` .. `features.18`,
`classifier.1`, width_mult / round_nearest through `_make_divisible`, the same init, so torchvision
checkpoints load with strict=True and give equal outputs), mmdetection `backbones/mobilenet_v2.py`
(backbone mode: out_indices over its eight stages, frozen_stages, norm_eval).
Stages (mmdet's numbering): stage i < 7 is row i of the paper's Table 2 (INVERTED_RESIDUAL_SETTING), stage
7 the 1x1 conv to 1280; the stem is features.0 and STAGE_ENDS[i] is the `features` index of stage i's
last module. FCOS's MNV2 body returns features 3/6/13/17 = stages (1, 2, 4, 6). A backbone builds
features only up to its last output, so every parameter it holds is used (DDP without
find_unused_parameters); keys stay torchvision's. resbone/models/base.py documents both forwards.

Reference test: tests/models/test_mobilenetv2.py (torchvision mobilenet_v2 width 1.0 and 0.5: strict
load, equal logits; timm mobilenetv2_100 weights copied, equal logits; backbone strides, freezing).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, List, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from torch import nn

from resbone.layers.helpers import make_divisible
from resbone.layers.norm import NormConfig, build_norm, check_norm_cfg
from resbone.models._checks import (
    check_frozen_stages,
    check_int,
    check_num_classes,
    check_out_indices,
    check_positive_number,
)
from resbone.models.base import FreezableBackbone, pretrained_cfg
from resbone.models.registry import register_model

__all__ = ["INVERTED_RESIDUAL_SETTING", "InvertedResidual", "MobileNetV2", "STAGE_ENDS", "mobilenet_v2"]

# t (expansion), c (channels), n (blocks), s (stride of the first block): the paper's Table 2.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
NUM_STAGES = len(INVERTED_RESIDUAL_SETTING) + 1  # + the final 1x1 conv, as mmdet counts
# features index of each stage's last module (the stem is features.0): 1, 3, 6, 10, 13, 16, 17, 18
STAGE_ENDS = tuple(itertools.accumulate([n for _, _, n, _ in INVERTED_RESIDUAL_SETTING] + [1]))
# timm's feature points (mobilenetv2_100's feature_info): the stages after which the stride changes, and the
# last block stage; timm's index i is mmdet's stage TIMM_STAGES[i]
TIMM_STAGES = (0, 1, 2, 4, 6)


def _conv_norm_relu6(in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1,
                     groups: int = 1, norm_cfg: NormConfig = None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation layout: (conv, norm, ReLU6) as indices 0, 1, 2."""
    layer = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                  groups=groups, bias=False),
        build_norm(norm_cfg, out_channels), nn.ReLU6(inplace=True))
    layer.out_channels = out_channels  # torchvision's attribute (its _mobilenet_extractor reads it)
    return layer


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
        self._is_cn = stride > 1  # torchvision's mark of a strided block (its _mobilenet_extractor finds stages by it)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(FreezableBackbone):
    """torchvision's MobileNetV2 (num_classes an int; 0 = pooled features) or a backbone returning the
    out_indices stage maps (num_classes=None).

    Backbone: out_indices index mmdet's eight stages (default (1, 2, 4, 7), strides 4/8/16/32); frozen_stages=k
    freezes the stem and stages 0..k-1 (0: the stem only) in eval mode, and train() re-applies it; norm_eval
    keeps every BatchNorm in eval mode. timm's numbering (mobilenetv2_100: feature_info of a network with a head,
    forward_intermediates, features_only) names the stages that end at a new stride: 0..4 = mmdet's stages 0, 1,
    2, 4, 6 (strides 2, 4, 8, 16, 32). `unbuilt_key(key)` tells a checkpoint loader which `features.N` keys a
    truncated backbone leaves out.
    """

    def __init__(self, *, num_classes: int | None = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, out_indices: Sequence[int] = (1, 2, 4, 7), frozen_stages: int = -1,
                 norm_cfg: NormConfig = None, norm_eval: bool = False, with_cp: bool = False,
                 in_channels: int = 3, global_pool: str = "avg") -> None:
        super().__init__()
        self.num_classes, self.has_head = check_num_classes(num_classes), num_classes is not None
        check_positive_number("width_mult", width_mult, " (1.0 = the paper's width)")
        check_int("round_nearest", round_nearest)
        self.in_channels = check_int("in_channels", in_channels)
        self.frozen_stages = check_frozen_stages(frozen_stages, NUM_STAGES)
        check_norm_cfg(norm_cfg)
        self.out_indices = tuple(range(NUM_STAGES)) if self.has_head else \
            check_out_indices(out_indices, NUM_STAGES, "1 = stride 4, 2 = stride 8, 4 = stride 16, 7 = stride 32")
        self.norm_eval, self.with_cp, self.width_mult = norm_eval, with_cp, width_mult
        self.num_features = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self._make_features(lambda c: make_divisible(c * width_mult, round_nearest), norm_cfg)
        classifier = self._make_head(num_classes, global_pool)
        if classifier is not None:
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), classifier)
        self.pretrained_cfg = pretrained_cfg(first_conv="features.0.0", classifier="classifier.1",
                                             num_classes=self.num_classes, in_channels=in_channels)
        self._init_weights()
        self._freeze_stages()

    def _make_features(self, width: Callable[[float], int], norm_cfg: NormConfig) -> None:
        """`features` up to the last out_index (every stage for a network with a head), and the taps."""
        features: list[nn.Module] = [_conv_norm_relu6(self.in_channels, width(32), stride=2, norm_cfg=norm_cfg)]
        self.taps_info, stride, channels = [], 2, width(32)
        for stage in range(max(self.out_indices) + 1):
            if stage < len(INVERTED_RESIDUAL_SETTING):
                t, c, n, s = INVERTED_RESIDUAL_SETTING[stage]
                for i in range(n):
                    features.append(InvertedResidual(channels, width(c), stride=s if i == 0 else 1, expand_ratio=t,
                                                     norm_cfg=norm_cfg))
                    channels = width(c)
                stride *= s
            else:
                features.append(_conv_norm_relu6(channels, self.num_features, kernel_size=1, norm_cfg=norm_cfg))
                channels = self.num_features
            self.taps_info.append(dict(channels=channels, stride=stride, module=f"features.{STAGE_ENDS[stage]}"))
        self.features = nn.Sequential(*features)
        self.stage_ends = list(STAGE_ENDS[:len(self.taps_info)])
        self.timm_taps = [stage for stage in TIMM_STAGES if stage < len(self.taps_info)]
        self.take = list(self.out_indices)
        self._set_features(head=self.has_head)

    @property
    def stage_names(self) -> list[str]:
        """The module that ends each built stage ('features.3' ends stage 1), as ResNet's 'layer1'..."""
        return [f"features.{end}" for end in self.stage_ends]

    @property
    def last_channel(self) -> int:
        """torchvision's name for the channels of the final 1x1 conv."""
        return self.num_features

    def unbuilt_key(self, key: str) -> bool:
        """A backbone builds `features` only up to its last out_index (so every parameter it holds gets a
        gradient); a full checkpoint's later `features.N.*` have nowhere to go."""
        index = key.split(".", 2)[1] if key.startswith("features.") else ""
        return not self.is_classifier and index.isdigit() and int(index) >= len(self.features)

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

    def _truncate(self, last: int) -> None:
        self.features = self.features[:self.stage_ends[last] + 1]
        self.stage_ends = self.stage_ends[:last + 1]

    def _forward_taps(self, x: torch.Tensor, take: List[int], last: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        maps: List[torch.Tensor] = []
        stop = self.stage_ends[last] if last < len(self.stage_ends) - 1 else len(self.features) - 1
        stage = 0
        for i, module in enumerate(self.features):  # a loop TorchScript unrolls: no slicing by runtime values
            if i <= stop:
                checkpointed = False
                if not torch.jit.is_scripting():  # checkpointing is eager-only
                    checkpointed = self.with_cp and x.requires_grad and torch.is_grad_enabled()
                    if checkpointed:
                        x = cp.checkpoint(module, x, use_reentrant=False)
                if not checkpointed:
                    x = module(x)
                if stage < len(self.stage_ends) and i == self.stage_ends[stage]:
                    if stage in take:
                        maps.append(x)
                    stage += 1
        return x, maps


@register_model
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """torchvision's mobilenet_v2 (width_mult=1.0 unless overridden); num_classes=None for a backbone."""
    weights = kwargs.pop("weights", None)
    if weights is not None:
        raise ValueError(f"weights={weights!r}: resbone downloads nothing; pass checkpoint=PATH to create_model")
    kwargs.pop("progress", None)
    if "in_chans" in kwargs:  # timm's name
        kwargs["in_channels"] = kwargs.pop("in_chans")
    if "norm_layer" in kwargs:
        norm_layer = kwargs.pop("norm_layer")
        if norm_layer is not None:
            kwargs["norm_cfg"] = norm_layer
    return MobileNetV2(**kwargs)


@register_model
def mobilenetv2_100(**kwargs: Any) -> MobileNetV2:
    """timm's name for width 1.0 (its checkpoints load through resbone.convert's timm dialect)."""
    return mobilenet_v2(**dict(dict(width_mult=1.0), **kwargs))

