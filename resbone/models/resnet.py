"""ResNet, ResNeXt, Wide-ResNet, V1c/V1d, caffe style, dilation, DCN, plugins, SE, IBN-a/b: one network.

Anchors: torchvision `models/resnet.py` (parameter names, init, the classifier: outputs equal to float32
tolerance), mmdetection `backbones/resnet.py` (the keyword arguments: depth, strides, dilations,
out_indices, style, deep_stem, avg_down, frozen_stages, norm_cfg, norm_eval, dcn, plugins, with_cp,
zero_init_residual), timm `models/resnet.py` (variants as data, feature_info, forward_intermediates, global_pool).
Reference tests: tests/models/test_resnet.py (against torchvision and timm), test_timm_numbering.py,
test_torchscript.py.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from resbone.layers.conv import check_dcn
from resbone.layers.norm import NormConfig, build_norm, check_norm_cfg
from resbone.models._checks import (
    check_choice,
    check_frozen_stages,
    check_int,
    check_num_classes,
    check_out_indices,
    per_stage,
    plugins_per_stage,
)
from resbone.models.base import FreezableBackbone, pretrained_cfg
from resbone.models.blocks import PLUGIN_POSITIONS, BasicBlock, Bottleneck, ResLayer, _Block, conv3x3

__all__ = ["ARCH_SETTINGS", "BasicBlock", "Bottleneck", "PLUGIN_POSITIONS", "ResLayer", "ResNet"]

STYLES = ("pytorch", "caffe")
# IBN-Net: IBN-a changes layer1-3, IBN-b layer1-2 (and the stem's norm becomes an InstanceNorm).
IBN_STAGES = {"a": 3, "b": 2}
# The stem max-pool: torchvision pads it; Caffe-era SENet (Hu et al.) used no padding and ceil mode.
STEM_POOLS = ("padded", "ceil")


ARCH_SETTINGS: dict[int, tuple[type[_Block], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _check_widths(depth: int, block: type[_Block], *, in_channels: int, stem_channels: int, base_channels: int,
                  groups: int, base_width: int, deep_stem: bool) -> None:
    for name, value in (("in_channels", in_channels), ("base_channels", base_channels), ("groups", groups),
                        ("base_width", base_width), ("stem_channels", stem_channels)):
        check_int(name, value)
    if deep_stem and stem_channels < 2:
        raise ValueError(f"deep_stem halves stem_channels in its first two convs, so stem_channels must be "
                         f">= 2, got {stem_channels!r}")
    if base_channels * base_width < 64:  # Bottleneck width = int(planes * base_width / 64) * groups
        raise ValueError(f"base_channels * base_width / 64 must be >= 1 (the first stage's width per group), "
                         f"got base_channels={base_channels}, base_width={base_width}")
    if (groups != 1 or base_width != 64) and block is BasicBlock:
        raise ValueError(f"groups={groups}, base_width={base_width} need Bottleneck blocks (depth 50/101/152); "
                         f"depth {depth} uses BasicBlock, which supports only groups=1, base_width=64")


def _check_block_options(*, ibn: Any, last_stride: Any, dcn: Any, stem_pool: Any, se: Any, style: Any,
                         deep_stem: bool) -> None:
    check_choice("style", style, STYLES, " (stride in the 3x3 or in the first 1x1)")
    check_choice("ibn", ibn, (None, "a", "b"), " (IBN-Net's IBN-a or IBN-b)")
    if ibn == "b" and deep_stem:
        raise ValueError("ibn='b' puts an InstanceNorm after IBN-Net's 7x7 stem conv; it has no deep-stem form "
                         "(deep_stem=True)")
    check_choice("last_stride", last_stride, (None, 1, 2))
    check_choice("stem_pool", stem_pool, STEM_POOLS)
    if dcn is not None:
        check_dcn(dcn)
    if se is not None and not isinstance(se, Mapping):
        raise TypeError(f"se must be None or a dict like dict(reduction=16), got {se!r}")


class ResNet(FreezableBackbone):
    """The ResNet family with mmdetection's keyword arguments and torchvision's parameter names.

    num_classes an int: torchvision's / timm's network (global_pool + fc; 0 = pooled features); None: a
    backbone returning the maps of `out_indices` in mmdetection's numbering (0 = layer1 ... 3 = layer4).
    timm's numbering (feature_info of a network with a head, forward_intermediates, features_only): 0 = the stem
    (`relu`, or `stem` for a deep stem, stride 2), 1..4 = layer1..layer4. resbone/models/base.py documents the
    modes. `pretrained_cfg` (timm's) names the first conv ('conv1', or 'stem.0' for a deep stem) and 'fc'."""

    def __init__(self, depth: int = 50, *, in_channels: int = 3, stem_channels: int | None = None,
                 base_channels: int = 64, num_stages: int = 4, strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1), out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = "pytorch", deep_stem: bool = False, avg_down: bool = False,
                 frozen_stages: int = -1, norm_cfg: NormConfig = None, norm_eval: bool = False,
                 dcn: Mapping[str, Any] | None = None, stage_with_dcn: Sequence[bool] = (False,) * 4,
                 plugins: Sequence[Mapping[str, Any]] | None = None, se: Mapping[str, Any] | None = None,
                 ibn: str | None = None, last_stride: int | None = None, with_cp: bool = False,
                 zero_init_residual: bool = False, groups: int = 1, base_width: int = 64,
                 num_classes: int | None = None, global_pool: str = "avg", stage_blocks: Sequence[int] | None = None,
                 dilate_first_block: bool = True, stem_pool: str = "padded"):
        super().__init__()
        if isinstance(depth, bool) or depth not in ARCH_SETTINGS:
            raise KeyError(f"invalid depth {depth!r} for ResNet; allowed: {sorted(ARCH_SETTINGS)}")
        block, default_blocks = ARCH_SETTINGS[depth]
        check_int("num_stages", num_stages, 1, 4)
        stem_channels = base_channels if stem_channels is None else stem_channels
        _check_widths(depth, block, in_channels=in_channels, stem_channels=stem_channels, deep_stem=deep_stem,
                      base_channels=base_channels, groups=groups, base_width=base_width)
        _check_block_options(ibn=ibn, last_stride=last_stride, dcn=dcn, stem_pool=stem_pool, se=se, style=style,
                             deep_stem=deep_stem)
        check_norm_cfg(norm_cfg)
        self.num_classes, self.has_head = check_num_classes(num_classes), num_classes is not None
        self.frozen_stages = check_frozen_stages(frozen_stages, num_stages)
        self.out_indices = tuple(range(num_stages)) if self.has_head else \
            check_out_indices(out_indices, num_stages, "0 = layer1")
        strides = list(per_stage("strides", strides, num_stages, positive_ints=True))
        if last_stride is not None:
            strides[-1] = last_stride
        stage_args = dict(strides=strides, dilations=per_stage("dilations", dilations, num_stages, positive_ints=True),
                          stage_blocks=per_stage("stage_blocks", stage_blocks or default_blocks, num_stages,
                                                 positive_ints=True),
                          stage_with_dcn=per_stage("stage_with_dcn", stage_with_dcn, num_stages),
                          plugins=plugins_per_stage(plugins, num_stages, PLUGIN_POSITIONS))
        self.depth, self.in_channels, self.num_stages = depth, in_channels, num_stages
        self.norm_eval, self.deep_stem, self.pruned = norm_eval, deep_stem, set()

        self._make_stem(stem_channels, dict(type="IN", affine=True) if ibn == "b" else norm_cfg, stem_pool)
        block_args = dict(groups=groups, base_width=base_width, se=se, with_cp=with_cp, norm_cfg=norm_cfg,
                          **(dict(style=style) if block is Bottleneck else {}))
        self._make_stages(block, stem_channels, base_channels, avg_down=avg_down, dcn=dcn, ibn=ibn,
                          dilate_first_block=dilate_first_block, block_args=block_args, **stage_args)
        fc = self._make_head(num_classes, global_pool)
        if fc is not None:
            self.fc = fc
        self.pretrained_cfg = pretrained_cfg(first_conv="stem.0" if deep_stem else "conv1", classifier="fc",
                                             num_classes=self.num_classes, in_channels=in_channels,
                                             stride=self.taps_info[-1]["stride"])
        self._init_weights(zero_init_residual, block)
        self._freeze_stages()

    @property
    def inplanes(self) -> int:
        """torchvision's name for the channels of layer4's output (its resnet_fpn_backbone reads it)."""
        return self.taps_info[-1]["channels"]

    def _make_stem(self, stem_channels: int, norm_cfg: NormConfig, stem_pool: str) -> None:
        if self.deep_stem:  # ResNet-C (Bag of Tricks): three 3x3 convs instead of the 7x7
            half = stem_channels // 2
            self.stem = nn.Sequential(
                conv3x3(self.in_channels, half, stride=2), build_norm(norm_cfg, half), nn.ReLU(inplace=True),
                conv3x3(half, half), build_norm(norm_cfg, half), nn.ReLU(inplace=True),
                conv3x3(half, stem_channels), build_norm(norm_cfg, stem_channels), nn.ReLU(inplace=True))
        else:
            self.conv1 = nn.Conv2d(self.in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = build_norm(norm_cfg, stem_channels)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool == "padded" \
            else nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

    def _make_stages(self, block: type[_Block], inplanes: int, base_channels: int, *, strides: Sequence[int],
                     dilations: Sequence[int], stage_blocks: Sequence[int], stage_with_dcn: Sequence[bool],
                     plugins: list[list[dict[str, Any]]], avg_down: bool, dcn: Mapping[str, Any] | None,
                     ibn: str | None, dilate_first_block: bool, block_args: dict[str, Any]) -> None:
        """layer1..layerN, and the taps (the stem, then each stage) recorded as they are built (timm)."""
        stride = 4
        self.taps_info = [dict(channels=inplanes, stride=2, module="stem" if self.deep_stem else "relu")]
        self.stage_names: list[str] = []
        for i in range(self.num_stages):
            planes = base_channels * 2 ** i
            first_dilation = None if dilate_first_block else (dilations[i - 1] if i else 1)
            layer = ResLayer(block, inplanes, planes, stage_blocks[i], stride=strides[i], dilation=dilations[i],
                             first_dilation=first_dilation, avg_down=avg_down, plugins=plugins[i],
                             dcn=dcn if stage_with_dcn[i] else None, ibn=ibn if i < IBN_STAGES.get(ibn, 0) else None,
                             **block_args)
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.stage_names.append(name)
            inplanes, stride = planes * block.expansion, stride * strides[i]
            self.taps_info.append(dict(channels=inplanes, stride=stride, module=name))
        self.num_features = inplanes
        self.timm_taps = list(range(self.num_stages + 1))
        self.take = [i + 1 for i in self.out_indices]  # mmdet's stage i is tap i + 1
        self._set_features(head=self.has_head)

    def _init_weights(self, zero_init_residual: bool, block: type[_Block]) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()
        if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
            for m in self.modules():
                if isinstance(m, block):
                    norm = getattr(m, block.last_norm)
                    if getattr(norm, "weight", None) is not None:
                        with torch.no_grad():
                            norm.weight.zero_()

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [self.stem] if self.deep_stem else [self.conv1, self.bn1]
        names = [f"layer{i}" for i in range(1, self.frozen_stages + 1)]
        return stem + [getattr(self, name) for name in names if hasattr(self, name)]

    def unbuilt_key(self, key: str) -> bool:
        """Keys of the stages prune_intermediate_layers / features_only removed."""
        return key.split(".", 1)[0] in self.pruned

    def _truncate(self, last: int) -> None:
        for name in self.stage_names[last:]:
            delattr(self, name)
            self.pruned.add(name)
        self.stage_names = self.stage_names[:last]
        if last == 0:  # the stem's map is the last one: its max-pool follows it
            self.maxpool = nn.Identity()

    def _forward_taps(self, x: torch.Tensor, take: List[int], last: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        # written out stage by stage, as torchvision's forward, so that TorchScript compiles it; hasattr is
        # resolved statically there (a network with fewer stages, or pruned, has no layer4)
        maps: List[torch.Tensor] = []
        if hasattr(self, "stem"):
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        if 0 in take:
            maps.append(x)
        x = self.maxpool(x)
        if hasattr(self, "layer1") and last >= 1:
            x = self.layer1(x)
            if 1 in take:
                maps.append(x)
        if hasattr(self, "layer2") and last >= 2:
            x = self.layer2(x)
            if 2 in take:
                maps.append(x)
        if hasattr(self, "layer3") and last >= 3:
            x = self.layer3(x)
            if 3 in take:
                maps.append(x)
        if hasattr(self, "layer4") and last >= 4:
            x = self.layer4(x)
            if 4 in take:
                maps.append(x)
        return x, maps
