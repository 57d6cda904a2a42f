"""The residual blocks and the stage: BasicBlock, Bottleneck (ResNet, ResNeXt, Wide, SE, IBN, DCN, plugins,
caffe style) and ResLayer; one Bottleneck serves every variant through its arguments.

Anchors: torchvision `models/resnet.py` (conv3x3 / conv1x1, the blocks' parameter names, the strided first
block), mmdetection `backbones/resnet.py` (style, dcn, plugins, with_cp, downsample_first). Every forward scripts
(TorchScript): the optional parts are None-or-module attributes and gradient checkpointing is eager-only.
Reference tests: tests/models/test_resnet.py (against torchvision and timm), tests/models/test_torchscript.py.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn

from resbone.layers.attention import build_plugin
from resbone.layers.conv import build_conv2d
from resbone.layers.norm import NormConfig, build_norm

__all__ = ["BasicBlock", "Bottleneck", "PLUGIN_POSITIONS", "ResLayer", "conv1x1", "conv3x3"]

PLUGIN_POSITIONS = ("after_conv1", "after_conv2", "after_conv3")


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

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        out = self._residual(x)
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            out += self.downsample(x)  # in place, as torchvision: faster
        else:
            out += x
        if self.IN is not None:  # IBN-b: InstanceNorm on the sum (a stage's last block only)
            out = self.IN(out)
        return self.relu(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # checkpointing is eager-only; a scripted block runs plainly
            if self.with_cp and x.requires_grad and torch.is_grad_enabled():
                return cp.checkpoint(self._block, x, use_reentrant=False)
        return self._block(x)


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
