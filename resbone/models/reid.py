"""Squeeze-excitation, IBN-a and re-identification variants: registered functions over the one ResNet.

Anchors: timm `models/resnet.py` (seresnet50 / seresnext50_32x4d: stride in the 3x3, SE as 1x1 convs
with bias, make_divisible(c/16, 8) channels), Cadene's / timm's legacy `senet.py` (se_resnet50/101:
stride in the first 1x1, SE reduction 16, a ceil-mode 3x3 max-pool without padding in the stem;
se_resnext50_32x4d: stride in the 3x3), IBN-Net's `resnet_ibn_a.py` (bn1 of every block of layer1-3 is
IBN: half InstanceNorm, half BatchNorm) and fast-reid / reid-strong-baseline (Linear SE without bias;
`last_stride=1` keeps layer4 at 1/16: a 256x128 person crop gives a 16x8 map). fast-reid's ResNet pools its
stem like Caffe's SENet (ceil mode, no padding): its SE-ResNet is registered as `se_resnet50_fastreid`; for its
IBN models pass `stem_pool='ceil'` (`create_model("resnet50_ibn_a", stem_pool="ceil")`), which
load_checkpoint reminds of, with a warning, when it reads a whole fast-reid model into a padded-pool network.
Every variant accepts ResNet's and torchvision's keywords, e.g.
`create_model("se_resnet50_ibn_a", last_stride=1, num_classes=None)`.

Reference tests: tests/models/test_reid.py (timm seresnet50, seresnext50_32x4d, legacy_seresnet50,
legacy_seresnext50_32x4d with weights copied: equal logits; IBN halves by hand; last_stride map size),
tests/convert/test_reid_dialects.py (fast-reid's, torchreid's and Cadene's own models: equal outputs).
"""
from __future__ import annotations

from typing import Any

from resbone.models.registry import register_model
from resbone.models.resnet import ResNet
from resbone.models.variants import RESNEXT_32X4D, build_resnet

__all__ = ["build_senet"]

_TIMM_SE = dict(se=dict(ratio=1 / 16, divisor=8))  # timm's SEModule: conv form, make_divisible(c/16, 8)
_SENET_SE = dict(se=dict(reduction=16, divisor=1))  # Cadene's SEModule: conv form, c // 16
_REID_SE = dict(se=dict(reduction=16, form="linear"))  # IBN-Net / fast-reid SELayer: Linear, no bias


def build_senet(depth: int, defaults: dict[str, Any], kwargs: dict[str, Any]) -> ResNet:
    """Cadene's SENet layout: our ResNet with senet's stem max-pool (3x3, stride 2, no padding, ceil mode).

    The pool has no parameters, so checkpoint keys are unchanged; it moves the pooling windows by one
    pixel relative to torchvision's padded pool, which the pretrained senet weights depend on.
    """
    return build_resnet(depth, dict(_SENET_SE, stem_pool="ceil", **defaults), kwargs)


# ---- timm's SE-ResNe(X)t (stride in the 3x3) -------------------------------------------------------
@register_model
def seresnet50(**kwargs: Any) -> ResNet:
    return build_resnet(50, dict(_TIMM_SE), kwargs)


@register_model
def seresnet101(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(_TIMM_SE), kwargs)


@register_model
def seresnext50_32x4d(**kwargs: Any) -> ResNet:
    return build_resnet(50, dict(_TIMM_SE, **RESNEXT_32X4D), kwargs)


# ---- Cadene's / Hu et al.'s SENet (timm legacy_*) --------------------------------------------------
@register_model
def se_resnet50(**kwargs: Any) -> ResNet:
    return build_senet(50, dict(style="caffe"), kwargs)


@register_model
def se_resnet101(**kwargs: Any) -> ResNet:
    return build_senet(101, dict(style="caffe"), kwargs)


@register_model
def se_resnet152(**kwargs: Any) -> ResNet:
    return build_senet(152, dict(style="caffe"), kwargs)


@register_model
def se_resnext50_32x4d(**kwargs: Any) -> ResNet:
    return build_senet(50, dict(RESNEXT_32X4D), kwargs)


@register_model
def se_resnext101_32x4d(**kwargs: Any) -> ResNet:
    return build_senet(101, dict(RESNEXT_32X4D), kwargs)


# ---- IBN-Net and re-identification ----------------------------------------------------------------
@register_model
def resnet50_ibn_a(**kwargs: Any) -> ResNet:
    return build_resnet(50, dict(ibn="a"), kwargs)


@register_model
def resnet101_ibn_a(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(ibn="a"), kwargs)


@register_model
def se_resnet50_ibn_a(**kwargs: Any) -> ResNet:
    return build_resnet(50, dict(_REID_SE, ibn="a"), kwargs)


@register_model
def se_resnet101_ibn_a(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(_REID_SE, ibn="a"), kwargs)


@register_model
def se_resnet50_fastreid(**kwargs: Any) -> ResNet:
    """fast-reid's SE-ResNet-50 (WITH_SE, no IBN): Linear SE in every block, ceil-mode stem pool."""
    return build_resnet(50, dict(_REID_SE, stem_pool="ceil"), kwargs)


@register_model
def se_resnet101_fastreid(**kwargs: Any) -> ResNet:
    return build_resnet(101, dict(_REID_SE, stem_pool="ceil"), kwargs)
