"""The named ResNet variants: each a few lines of data over `ResNet`, as timm's registry.

torchvision's factory keywords (num_classes, zero_init_residual, groups, width_per_group,
replace_stride_with_dilation, norm_layer, weights) are accepted and mapped, so code written for
`torchvision.models.resnet50(...)` runs unchanged. Reference tests: tests/models/test_resnet.py.
"""
from __future__ import annotations

from typing import Any

from resbone.models.registry import register_model
from resbone.models.resnet import ResNet

__all__ = ["RESNEXT_32X4D", "build_resnet"]

# ResNeXt-50 32x4d (Xie et al. 2017, Table 1): 32 groups of width 4 in the first stage's 3x3 conv
RESNEXT_32X4D = dict(groups=32, base_width=4)


def _from_torchvision(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map torchvision's factory keywords (and timm's in_chans) onto ResNet's."""
    weights = kwargs.pop("weights", None)
    if weights is not None:
        raise ValueError(f"weights={weights!r}: resbone downloads nothing; save the weights to a file and pass "
                         f"checkpoint=PATH (any dialect: torchvision, timm, mmdet, detectron2, ...)")
    kwargs.pop("progress", None)
    if "in_chans" in kwargs:  # timm's name
        kwargs["in_channels"] = kwargs.pop("in_chans")
    if "width_per_group" in kwargs:
        kwargs["base_width"] = kwargs.pop("width_per_group")
    if "norm_layer" in kwargs:
        norm_layer = kwargs.pop("norm_layer")
        if norm_layer is not None:
            kwargs["norm_cfg"] = norm_layer
    dilate = kwargs.pop("replace_stride_with_dilation", None)
    if dilate is not None:
        if len(dilate) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or a 3-element tuple, got {dilate!r}")
        # torchvision: a dilated stage keeps its stride's worth of dilation, and its first block still
        # uses the previous stage's dilation.
        strides, dilations, dilation = [1], [1], 1
        for replace in dilate:
            if replace:
                dilation *= 2
            strides.append(1 if replace else 2)
            dilations.append(dilation)
        kwargs.update(strides=tuple(strides), dilations=tuple(dilations), dilate_first_block=False)
    return kwargs


def build_resnet(depth: int, defaults: dict[str, Any], kwargs: dict[str, Any]) -> ResNet:
    """A classifier (num_classes=1000 unless overridden) from a variant's defaults and the caller's kwargs."""
    options = dict(num_classes=1000, **defaults)
    options.update(_from_torchvision(dict(kwargs)))
    return ResNet(depth, **options)


_DEEP_STEM = dict(deep_stem=True)
_RESNET_D = dict(deep_stem=True, avg_down=True)


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    return build_resnet(18, {}, kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    return build_resnet(34, {}, kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    return build_resnet(50, {}, kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    return build_resnet(101, {}, kwargs)


@register_model
def resnet152(**kwargs: Any) -> ResNet:
    return build_resnet(152, {}, kwargs)


@register_model
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    return build_resnet(50, RESNEXT_32X4D, kwargs)


@register_model
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(groups=32, base_width=8), kwargs)


@register_model
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(groups=64, base_width=4), kwargs)


@register_model
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    return build_resnet(50, dict(base_width=128), kwargs)


@register_model
def wide_resnet101_2(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(base_width=128), kwargs)


@register_model
def resnet18c(**kwargs: Any) -> ResNet:
    return build_resnet(18, _DEEP_STEM, kwargs)


@register_model
def resnet34c(**kwargs: Any) -> ResNet:
    return build_resnet(34, _DEEP_STEM, kwargs)


@register_model
def resnet50c(**kwargs: Any) -> ResNet:
    return build_resnet(50, _DEEP_STEM, kwargs)


@register_model
def resnet101c(**kwargs: Any) -> ResNet:
    return build_resnet(101, _DEEP_STEM, kwargs)


@register_model
def resnet152c(**kwargs: Any) -> ResNet:
    return build_resnet(152, _DEEP_STEM, kwargs)


@register_model
def resnet18d(**kwargs: Any) -> ResNet:
    return build_resnet(18, _RESNET_D, kwargs)


@register_model
def resnet34d(**kwargs: Any) -> ResNet:
    return build_resnet(34, _RESNET_D, kwargs)


@register_model
def resnet50d(**kwargs: Any) -> ResNet:
    return build_resnet(50, _RESNET_D, kwargs)


@register_model
def resnet101d(**kwargs: Any) -> ResNet:
    return build_resnet(101, _RESNET_D, kwargs)


@register_model
def resnet152d(**kwargs: Any) -> ResNet:
    return build_resnet(152, _RESNET_D, kwargs)


@register_model
def resnet50_ibn_b(**kwargs: Any) -> ResNet:
    """IBN-Net's IBN-b (Pan et al. 2018; torchreid `resnet50_ibn_b`): InstanceNorm after the stem conv and on
    the sum of layer1's and layer2's last blocks."""
    return build_resnet(50, dict(ibn="b"), kwargs)
