"""ResNet, ResNeXt, Wide-ResNet, V1c/V1d, caffe style, dilation, DCN, plugins, SE, IBN-a: one network.

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
from resbone.models.base import FreezableBackbone, pretrained_cfg

__all__ = ["ARCH_SETTINGS", "BasicBlock", "Bottleneck", "PLUGIN_POSITIONS", "ResLayer", "ResNet"]

PLUGIN_POSITIONS = ("after_conv1", "after_conv2", "after_conv3")
STYLES = ("pytorch", "caffe")
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
    """What both blocks share: the residual addition, SE, plugins and gradient checkpointing."""

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
            return self.relu(out)

        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)


class BasicBlock(_Block):
    """Two 3x3 convs (He et al. 2016, Fig. 2 left); unlike torchvision it accepts dilation."""

    expansion = 1
    last_norm = "bn2"

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, style: str = "pytorch", norm_cfg: NormConfig = None,
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
                 norm_cfg: NormConfig = None, downsample_first: bool = True, **block_kwargs: Any):
        out_planes = planes * block.expansion
        blocks: list[nn.Module] = []
        if downsample_first:
            blocks.append(block(inplanes, planes, stride=stride, dilation=dilation,
                                first_dilation=first_dilation, norm_cfg=norm_cfg,
                                downsample=self._shortcut(inplanes, out_planes, stride, avg_down, norm_cfg),
                                **block_kwargs))
            blocks += [block(out_planes, planes, dilation=dilation, norm_cfg=norm_cfg, **block_kwargs)
                       for _ in range(1, num_blocks)]
        else:
            blocks += [block(inplanes, inplanes // block.expansion, dilation=dilation, norm_cfg=norm_cfg,
                             **block_kwargs) for _ in range(num_blocks - 1)]
            blocks.append(block(inplanes, planes, stride=stride, dilation=dilation, norm_cfg=norm_cfg,
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


def _per_stage(name: str, value: Sequence[Any], num_stages: int) -> tuple[Any, ...]:
    """A per-stage sequence: one entry per stage (or the 4-entry default, cut to num_stages)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence with one entry per stage, got {value!r}")
    if len(value) not in (num_stages, 4) or len(value) < num_stages:
        raise ValueError(f"{name} must have {num_stages} entries (one per stage, num_stages={num_stages}), "
                         f"got {len(value)}: {tuple(value)!r}")
    return tuple(value[:num_stages])


class ResNet(FreezableBackbone):
    """The ResNet family with mmdetection's keyword arguments and torchvision's parameter names.

    num_classes None/0 gives a backbone whose forward returns the feature maps of `out_indices`
    (0 = layer1 ... 3 = layer4); num_classes > 0 gives torchvision's classifier (global pool + fc).
    `pretrained_cfg` (timm's) names the first conv ('conv1', or 'stem.0' for a deep stem) and the classifier ('fc')."""

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
        if isinstance(num_stages, bool) or num_stages not in (1, 2, 3, 4):
            raise ValueError(f"num_stages must be 1, 2, 3 or 4, got {num_stages!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES} (stride in the 3x3 or in the first 1x1), "
                             f"got {style!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        for name, value in (("stem_channels", 1 if stem_channels is None else stem_channels),
                            ("base_channels", base_channels), ("groups", groups), ("base_width", base_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if deep_stem and (base_channels if stem_channels is None else stem_channels) < 2:
            raise ValueError(f"deep_stem halves stem_channels in its first two convs, so stem_channels must be "
                             f">= 2, got {base_channels if stem_channels is None else stem_channels!r}")
        if base_channels * base_width < 64:  # Bottleneck width = int(planes * base_width / 64) * groups
            raise ValueError(f"base_channels * base_width / 64 must be >= 1 (the first stage's width per group), "
                             f"got base_channels={base_channels}, base_width={base_width}")
        if ibn not in (None, "a"):
            raise ValueError(f"ibn must be None or 'a' (IBN-a), got {ibn!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 0):
            raise ValueError(f"num_classes must be None, 0 (backbone) or a positive int, got {num_classes!r}")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be an int from -1 (nothing frozen) to num_stages="
                             f"{num_stages}, got {frozen_stages!r}")
        if last_stride not in (None, 1, 2):
            raise ValueError(f"last_stride must be None, 1 or 2, got {last_stride!r}")
        if dcn is not None:
            check_dcn(dcn)
        if stem_pool not in STEM_POOLS:
            raise ValueError(f"stem_pool must be one of {STEM_POOLS}, got {stem_pool!r}")
        if se is not None and not isinstance(se, Mapping):
            raise TypeError(f"se must be None or a dict like dict(reduction=16), got {se!r}")
        check_norm_cfg(norm_cfg)
        block, default_blocks = ARCH_SETTINGS[depth]
        strides = list(_per_stage("strides", strides, num_stages))
        dilations = _per_stage("dilations", dilations, num_stages)
        stage_with_dcn = _per_stage("stage_with_dcn", stage_with_dcn, num_stages)
        stage_blocks = _per_stage("stage_blocks", stage_blocks or default_blocks, num_stages)
        for name, values in (("strides", strides), ("dilations", dilations), ("stage_blocks", stage_blocks)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must hold positive ints, got {tuple(values)!r}")
        if last_stride is not None:
            strides[-1] = last_stride
        self.num_classes = num_classes or 0
        if isinstance(out_indices, int) or not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be a sequence of stage indices, got {out_indices!r}")
        out_indices = tuple(range(num_stages)) if self.num_classes else tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < num_stages for i in out_indices) \
                or len(set(out_indices)) != len(out_indices) or list(out_indices) != sorted(out_indices):
            raise ValueError(f"out_indices must be distinct, increasing stage indices in 0..{num_stages - 1} "
                             f"(0 = layer1), got {out_indices!r}")
        if (groups != 1 or base_width != 64) and block is BasicBlock:
            raise ValueError(f"groups={groups}, base_width={base_width} need Bottleneck blocks (depth 50/101/"
                             f"152); depth {depth} uses BasicBlock, which supports only groups=1, base_width=64")
        stage_plugins = [self._stage_plugins(plugins, i, num_stages) for i in range(num_stages)]

        self.depth, self.in_channels, self.num_stages = depth, in_channels, num_stages
        self.out_indices, self.frozen_stages, self.norm_eval = out_indices, frozen_stages, norm_eval
        self.deep_stem = deep_stem
        stem_channels = base_channels if stem_channels is None else stem_channels
        if deep_stem:  # ResNet-C (Bag of Tricks): three 3x3 convs instead of the 7x7
            half = stem_channels // 2
            self.stem = nn.Sequential(
                conv3x3(in_channels, half, stride=2), build_norm(norm_cfg, half), nn.ReLU(inplace=True),
                conv3x3(half, half), build_norm(norm_cfg, half), nn.ReLU(inplace=True),
                conv3x3(half, stem_channels), build_norm(norm_cfg, stem_channels), nn.ReLU(inplace=True))
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = build_norm(norm_cfg, stem_channels)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool == "padded" \
            else nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

        inplanes, stride_so_far, stage_info = stem_channels, 4, []
        self.stage_names: list[str] = []
        for i in range(num_stages):
            planes = base_channels * 2 ** i
            previous_dilation = dilations[i - 1] if i else 1
            layer = ResLayer(block, inplanes, planes, stage_blocks[i], stride=strides[i], dilation=dilations[i],
                             first_dilation=None if dilate_first_block else previous_dilation,
                             avg_down=avg_down, norm_cfg=norm_cfg, groups=groups, base_width=base_width,
                             style=style, dcn=dcn if stage_with_dcn[i] else None, plugins=stage_plugins[i],
                             se=se, ibn=ibn if i < 3 else None, with_cp=with_cp)
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.stage_names.append(name)
            inplanes, stride_so_far = planes * block.expansion, stride_so_far * strides[i]
            stage_info.append(dict(channels=inplanes, stride=stride_so_far, module=name))
        self.feature_info = [stage_info[i] for i in out_indices]
        self.out_channels = [info["channels"] for info in self.feature_info]
        if self.num_classes:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inplanes, self.num_classes)

        self.pretrained_cfg = pretrained_cfg(first_conv="stem.0" if deep_stem else "conv1", classifier="fc",
                                             num_classes=self.num_classes, in_channels=in_channels)
        self._init_weights(zero_init_residual, block)
        self._freeze_stages()

    @staticmethod
    def _stage_plugins(plugins: Sequence[Mapping[str, Any]] | None, stage: int,
                       num_stages: int) -> list[dict[str, Any]]:
        """mmdetection's plugin list, filtered to one stage: [dict(cfg, position), ...]."""
        chosen = []
        for plugin in plugins or ():
            if not isinstance(plugin, Mapping) or "cfg" not in plugin or "position" not in plugin:
                raise ValueError(f"each plugin must be dict(cfg=dict(type=...), position=..., stages=...), "
                                 f"got {plugin!r}")
            if plugin["position"] not in PLUGIN_POSITIONS:
                raise ValueError(f"plugin position {plugin['position']!r} is not one of {PLUGIN_POSITIONS}")
            unknown = set(plugin) - {"cfg", "position", "stages"}
            if unknown:
                raise KeyError(f"plugin {plugin!r} has unknown keys {sorted(unknown)}; allowed: cfg, position, "
                               f"stages")
            stages = plugin.get("stages")
            if stages is not None:
                stages = _per_stage("plugin stages", stages, num_stages)
            if stages is None or stages[stage]:
                chosen.append(dict(cfg=plugin["cfg"], position=plugin["position"]))
        return chosen

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

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"ResNet expects a torch.Tensor of shape (N, {self.in_channels}, H, W), "
                            f"got {type(x).__name__}")
        if not x.is_floating_point():  # uint8 images otherwise fail inside conv2d ("expected scalar type")
            raise TypeError(f"ResNet expects a floating-point tensor, got {x.dtype} (an image batch? convert it "
                            f"with x.float() and normalise it first)")
        if x.dim() != 4:
            raise ValueError(f"ResNet expects a 4-D batch (N, C, H, W), got a {x.dim()}-D tensor of shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet was built for in_channels={self.in_channels} but got {x.shape[1]} "
                             f"channels (input shape {tuple(x.shape)})")

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        """The out_indices feature maps (backbone), or the last stage's map (classifier)."""
        self._check_input(x)
        x = self.forward_stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return x if self.num_classes else tuple(outs)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        features = self.forward_features(x)
        return self.forward_head(features) if self.num_classes else features
