"""ResNet, ResNeXt, Wide-ResNet, V1c/V1d, caffe style, dilation, DCN, plugins, SE, IBN-a/b: one network.

Anchors: torchvision `models/resnet.py` (parameter names, init, the classifier: outputs equal to float32
tolerance), mmdetection `backbones/resnet.py` (the keyword arguments: depth, strides, dilations,
out_indices, style, deep_stem, avg_down, frozen_stages, norm_cfg, norm_eval, dcn, plugins, with_cp,
zero_init_residual), timm `models/resnet.py` (variants as data, feature_info).
Reference tests: tests/models/test_resnet.py (against torchvision and timm).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn

from resbone.layers.attention import build_plugin
from resbone.layers.conv import build_conv2d, check_dcn
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
from resbone.models.base import FeatureInfo, FreezableBackbone, pretrained_cfg

__all__ = ["ARCH_SETTINGS", "BasicBlock", "Bottleneck", "PLUGIN_POSITIONS", "ResLayer", "ResNet"]

PLUGIN_POSITIONS = ("after_conv1", "after_conv2", "after_conv3")
STYLES = ("pytorch", "caffe")
# IBN-Net: IBN-a changes layer1-3, IBN-b layer1-2 (and the stem's norm becomes an InstanceNorm).
IBN_STAGES = {"a": 3, "b": 2}
# The stem max-pool: torchvision pads it; Caffe-era SENet (Hu et al.) used no padding and ceil mode.
STEM_POOLS = ("padded", "ceil")


def conv3x3(inplanes: int, planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)


def _plugin_chain(plugins: Sequence[Mapping[str, Any]], position: str, channels: int) -> nn.Sequential | None:
    """The plugins at one position, applied in the order given (each one acts, not only the last)."""
    layers = [build_plugin(dict(p["cfg"]), channels) for p in plugins if p["position"] == position]
    return nn.Sequential(*layers) if layers else None


class _Block(nn.Module):
    """What both blocks share: the residual addition, SE, IBN-b, plugins and gradient checkpointing.

    ibn='a' (IBN-Net, Pan et al. 2018) makes bn1 an IBN (half InstanceNorm); ibn='b' adds `IN`, an
    InstanceNorm of the sum before the last ReLU (IBN-Net's and torchreid's `resnet50_ibn_b` names)."""

    expansion = 1
    last_norm = "bn2"

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # each block's own branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def block(x: torch.Tensor) -> torch.Tensor:
            out = self._residual(x)
            if self.se is not None:
                out = self.se(out)
            out += x if self.downsample is None else self.downsample(x)  # in place, as torchvision: faster
            if self.IN is not None:  # IBN-b: InstanceNorm on the sum (a stage's last block only)
                out = self.IN(out)
            return self.relu(out)

        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)


class BasicBlock(_Block):
    """Two 3x3 convs (He et al. 2016, Fig. 2 left); unlike torchvision it accepts dilation.

    It takes no `style` (mmdetection's accepts and ignores it): with no 1x1 conv there is no choice of where
    the stride goes, so a style passed here is a TypeError rather than a silently ignored setting."""

    expansion = 1
    last_norm = "bn2"

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, norm_cfg: NormConfig = None,
                 dcn: Mapping[str, Any] | None = None, plugins: Sequence[Mapping[str, Any]] = (),
                 se: Mapping[str, Any] | None = None, ibn: str | None = None, with_cp: bool = False):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock (depth 18/34) supports only groups=1 and base_width=64, got "
                             f"groups={groups}, base_width={base_width}; use depth >= 50 for ResNeXt/Wide")
        if dcn is not None:
            raise ValueError("dcn needs Bottleneck blocks (depth 50/101/152); BasicBlock has no DCN")
        if plugins:
            raise ValueError("plugins need Bottleneck blocks (depth 50/101/152), as in mmdetection")
        first_dilation = dilation if first_dilation is None else first_dilation
        self.conv1 = conv3x3(inplanes, planes, stride, dilation=first_dilation)
        self.bn1 = build_norm("IBN" if ibn == "a" else norm_cfg, planes)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = build_norm(norm_cfg, planes)
        self.relu = nn.ReLU(inplace=True)
        self.se = build_plugin(dict(type="SE", **se), planes) if se is not None else None
        self.IN = nn.InstanceNorm2d(planes, affine=True) if ibn == "b" else None
        self.downsample = downsample
        self.stride = stride
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (grouped for ResNeXt, deformable for DCN), 1x1 expand (He et al. 2016, Fig. 5).

    style='pytorch' strides the 3x3 conv (torchvision, "ResNet v1.5"); style='caffe' strides the first
    1x1 (MSRA, detectron2 STRIDE_IN_1X1, FCOS)."""

    expansion = 4
    last_norm = "bn3"

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, style: str = "pytorch", norm_cfg: NormConfig = None,
                 dcn: Mapping[str, Any] | None = None, plugins: Sequence[Mapping[str, Any]] = (),
                 se: Mapping[str, Any] | None = None, ibn: str | None = None, with_cp: bool = False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_planes = planes * self.expansion
        conv1_stride, conv2_stride = (stride, 1) if style == "caffe" else (1, stride)
        first_dilation = dilation if first_dilation is None else first_dilation
        self.conv1 = conv1x1(inplanes, width, conv1_stride)
        self.bn1 = build_norm("IBN" if ibn == "a" else norm_cfg, width)
        self.conv2 = build_conv2d(None if dcn is None else dict(dcn), width, width, 3, stride=conv2_stride,
                                  padding=first_dilation, dilation=first_dilation, groups=groups, bias=False)
        self.bn2 = build_norm(norm_cfg, width)
        self.conv3 = conv1x1(width, out_planes)
        self.bn3 = build_norm(norm_cfg, out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.after_conv1 = _plugin_chain(plugins, "after_conv1", width)
        self.after_conv2 = _plugin_chain(plugins, "after_conv2", width)
        self.after_conv3 = _plugin_chain(plugins, "after_conv3", out_planes)
        self.se = build_plugin(dict(type="SE", **se), out_planes) if se is not None else None
        self.IN = nn.InstanceNorm2d(out_planes, affine=True) if ibn == "b" else None
        self.downsample = downsample
        self.stride = stride
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.after_conv1 is not None:
            out = self.after_conv1(out)
        out = self.relu(self.bn2(self.conv2(out)))
        if self.after_conv2 is not None:
            out = self.after_conv2(out)
        out = self.bn3(self.conv3(out))
        if self.after_conv3 is not None:
            out = self.after_conv3(out)
        return out


class ResLayer(nn.Sequential):
    """One stage: `num_blocks` blocks, the stride and shortcut projection in the first block
    (`downsample_first=True`, ResNet) or in the last one (`downsample_first=False`, Hourglass)."""

    def __init__(self, block: type[_Block], inplanes: int, planes: int, num_blocks: int, *, stride: int = 1,
                 dilation: int = 1, first_dilation: int | None = None, avg_down: bool = False,
                 norm_cfg: NormConfig = None, downsample_first: bool = True, ibn: str | None = None,
                 **block_kwargs: Any):
        out_planes = planes * block.expansion
        # IBN-b puts its InstanceNorm in a stage's last block only; IBN-a changes every block
        ibns = [None if ibn == "b" and j < num_blocks - 1 else ibn for j in range(num_blocks)]
        blocks: list[nn.Module] = []
        if downsample_first:
            blocks.append(block(inplanes, planes, stride=stride, dilation=dilation,
                                first_dilation=first_dilation, norm_cfg=norm_cfg, ibn=ibns[0],
                                downsample=self._shortcut(inplanes, out_planes, stride, avg_down, norm_cfg),
                                **block_kwargs))
            blocks += [block(out_planes, planes, dilation=dilation, norm_cfg=norm_cfg, ibn=ibns[j], **block_kwargs)
                       for j in range(1, num_blocks)]
        else:
            blocks += [block(inplanes, inplanes // block.expansion, dilation=dilation, norm_cfg=norm_cfg,
                             ibn=ibns[j], **block_kwargs) for j in range(num_blocks - 1)]
            blocks.append(block(inplanes, planes, stride=stride, dilation=dilation, norm_cfg=norm_cfg, ibn=ibns[-1],
                                downsample=self._shortcut(inplanes, out_planes, stride, avg_down, norm_cfg),
                                **block_kwargs))
        super().__init__(*blocks)

    @staticmethod
    def _shortcut(inplanes: int, out_planes: int, stride: int, avg_down: bool,
                  norm_cfg: NormConfig) -> nn.Sequential | None:
        if stride == 1 and inplanes == out_planes:
            return None
        if not avg_down:
            return nn.Sequential(conv1x1(inplanes, out_planes, stride), build_norm(norm_cfg, out_planes))
        # ResNet-D (He et al. 2019, "Bag of Tricks"): average-pool, then a stride-1 projection, so the
        # shortcut no longer ignores three quarters of its input.
        pool: nn.Module = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) \
            if stride != 1 else nn.Identity()
        return nn.Sequential(pool, conv1x1(inplanes, out_planes), build_norm(norm_cfg, out_planes))


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

    num_classes > 0: torchvision's classifier (global pool + fc); None/0: a backbone returning the maps of
    `out_indices` (0 = layer1 ... 3 = layer4); resbone/models/base.py documents both forwards.
    `pretrained_cfg` (timm's) names the first conv ('conv1', or 'stem.0' for a deep stem) and the classifier ('fc')."""

    head = "fc"

    def __init__(self, depth: int = 50, *, in_channels: int = 3, stem_channels: int | None = None,
                 base_channels: int = 64, num_stages: int = 4, strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1), out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = "pytorch", deep_stem: bool = False, avg_down: bool = False,
                 frozen_stages: int = -1, norm_cfg: NormConfig = None, norm_eval: bool = False,
                 dcn: Mapping[str, Any] | None = None, stage_with_dcn: Sequence[bool] = (False,) * 4,
                 plugins: Sequence[Mapping[str, Any]] | None = None, se: Mapping[str, Any] | None = None,
                 ibn: str | None = None, last_stride: int | None = None, with_cp: bool = False,
                 zero_init_residual: bool = False, groups: int = 1, base_width: int = 64,
                 num_classes: int | None = None, stage_blocks: Sequence[int] | None = None,
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
        self.num_classes = check_num_classes(num_classes)
        self.is_classifier = bool(self.num_classes)
        self.frozen_stages = check_frozen_stages(frozen_stages, num_stages)
        self.out_indices = tuple(range(num_stages)) if self.is_classifier else \
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
        self.norm_eval, self.deep_stem = norm_eval, deep_stem

        self._make_stem(stem_channels, dict(type="IN", affine=True) if ibn == "b" else norm_cfg, stem_pool)
        block_args = dict(groups=groups, base_width=base_width, se=se, with_cp=with_cp, norm_cfg=norm_cfg,
                          **(dict(style=style) if block is Bottleneck else {}))
        self._make_stages(block, stem_channels, base_channels, avg_down=avg_down, dcn=dcn, ibn=ibn,
                          dilate_first_block=dilate_first_block, block_args=block_args, **stage_args)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if self.is_classifier:
            self.fc = nn.Linear(self.num_features, self.num_classes)
        self.pretrained_cfg = pretrained_cfg(first_conv="stem.0" if deep_stem else "conv1", classifier="fc",
                                             num_classes=self.num_classes, in_channels=in_channels)
        self._init_weights(zero_init_residual, block)
        self._freeze_stages()

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
        """layer1..layerN, and feature_info recorded as they are built (timm)."""
        stride, stage_info = 4, []
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
            stage_info.append(dict(channels=inplanes, stride=stride, module=name))
        self.num_features = inplanes
        self.feature_info = FeatureInfo(stage_info[i] for i in self.out_indices)
        self.out_channels = self.feature_info.channels()

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
        return stem + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    @property
    def num_built_stages(self) -> int:
        return self.num_stages

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x)

    def _forward_stages(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        x = self.forward_stem(x)
        maps = []
        for i, name in enumerate(self.stage_names[:indices[-1] + 1]):
            x = getattr(self, name)(x)
            if i in indices:
                maps.append(x)
        return maps
