"""The mmdetection config dialect at the edge: backbone dicts -> resbone's classes (FCOS / maskrcnn-benchmark's
CONV_BODY lives with the FCOS code, in resbone.detection.backbone).

Anchors: mmdetection `models/backbones/resnet.py`, `resnext.py`, `mobilenet_v2.py` (argument names and
defaults: norm_eval=True, zero_init_residual=True, out_indices=(0, 1, 2, 3), style='pytorch';
ResNetV1c = deep stem, ResNetV1d = deep stem + avg_down; ResNeXt's width = planes when groups == 1).
Each config is translated once into the plain keyword arguments of `ResNet` / `MobileNetV2`; nothing is
looked up at run time.

Reference test: tests/test_builders.py (mmdetection's own model configs build and run; C3-C5 strides;
freezing equivalences; every bad input's error).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

from torch import nn

from resbone.layers.conv import check_dcn
from resbone.models.mobilenetv2 import MobileNetV2
from resbone.models.resnet import ARCH_SETTINGS, Bottleneck, ResNet
from resbone.models.variants import RESNEXT_32X4D
from resbone.utils.checks import is_int

__all__ = ["MMDET_TYPES", "build_backbone"]

# mmdetection's ResNet arguments and defaults (ResNeXt adds groups/base_width); resbone's extras follow.
_MMDET_RESNET_DEFAULTS: dict[str, Any] = dict(
    depth=None, in_channels=3, stem_channels=None, base_channels=64, num_stages=4, strides=(1, 2, 2, 2),
    dilations=(1, 1, 1, 1), out_indices=(0, 1, 2, 3), style="pytorch", deep_stem=False, avg_down=False,
    frozen_stages=-1, conv_cfg=None, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, dcn=None,
    stage_with_dcn=(False, False, False, False), plugins=None, with_cp=False, zero_init_residual=True,
    pretrained=None, init_cfg=None)
_RESBONE_RESNET_EXTRAS = ("se", "ibn", "last_stride")
_MMDET_MOBILENET_DEFAULTS: dict[str, Any] = dict(
    widen_factor=1.0, out_indices=(1, 2, 4, 7), frozen_stages=-1, conv_cfg=None, norm_cfg=dict(type="BN"),
    act_cfg=dict(type="ReLU6"), norm_eval=False, with_cp=False, pretrained=None, init_cfg=None)
# type -> (arguments it accepts with their defaults, arguments the type fixes)
MMDET_TYPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ResNet": (_MMDET_RESNET_DEFAULTS, {}),
    "ResNetV1c": (_MMDET_RESNET_DEFAULTS, dict(deep_stem=True, avg_down=False)),
    "ResNetV1d": (_MMDET_RESNET_DEFAULTS, dict(deep_stem=True, avg_down=True)),
    "ResNeXt": (dict(_MMDET_RESNET_DEFAULTS, groups=1, base_width=4), {}),
    "MobileNetV2": (_MMDET_MOBILENET_DEFAULTS, {}),
}
# mmpretrain `models/backbones/{resnet,resnext,seresnet,seresnext,mobilenet_v2}.py`: a classifier's
# backbone, so out_indices=(3,) (MobileNetV2: (7,)), norm_eval=False; stem_channels=64 whatever
# base_channels; ResNeXt spells the width `width_per_group` (32x4d by default); SE squeezes by se_ratio.
_MMPRETRAIN_RESNET_DEFAULTS: dict[str, Any] = dict(
    depth=None, in_channels=3, stem_channels=64, base_channels=64, expansion=None, num_stages=4,
    strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), out_indices=(3,), style="pytorch", deep_stem=False, avg_down=False,
    frozen_stages=-1, conv_cfg=None, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, with_cp=False,
    zero_init_residual=True, init_cfg=None, drop_path_rate=0.0)
_RESNEXT_32X4D = dict(groups=RESNEXT_32X4D["groups"], width_per_group=RESNEXT_32X4D["base_width"])
MMPRETRAIN_TYPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ResNet": (_MMPRETRAIN_RESNET_DEFAULTS, {}),
    "ResNetV1c": (_MMPRETRAIN_RESNET_DEFAULTS, dict(deep_stem=True, avg_down=False)),
    "ResNetV1d": (_MMPRETRAIN_RESNET_DEFAULTS, dict(deep_stem=True, avg_down=True)),
    "ResNeXt": (dict(_MMPRETRAIN_RESNET_DEFAULTS, **_RESNEXT_32X4D), {}),
    "SEResNet": (dict(_MMPRETRAIN_RESNET_DEFAULTS, se_ratio=16), {}),
    "SEResNeXt": (dict(_MMPRETRAIN_RESNET_DEFAULTS, se_ratio=16, **_RESNEXT_32X4D), {}),
    "MobileNetV2": (dict(_MMDET_MOBILENET_DEFAULTS, out_indices=(7,)), {}),
}
_SCOPES = {"mmdet": MMDET_TYPES, "mmpretrain": MMPRETRAIN_TYPES}
_BOTTLENECK_ONLY = ("ResNeXt", "SEResNet", "SEResNeXt")  # mmpretrain's arch_settings: the Bottleneck depths
_BOTTLENECK_DEPTHS = [depth for depth, (block, _) in ARCH_SETTINGS.items() if block is Bottleneck]
_PLAIN_CONV_TYPES = ("Conv", "Conv2d")
_INIT_TYPES_IGNORED = ("Kaiming", "Constant", "Normal", "Xavier", "Uniform", "TruncNormal")


# ---- mmdetection ----------------------------------------------------------------------------------
def _pretrained_path(pretrained: Any, init_cfg: Any) -> tuple[str | None, str | None]:
    """The checkpoint an mmdet config asks for (pretrained=PATH or init_cfg=dict(type='Pretrained')),
    and the key prefix to take from it (init_cfg's `prefix`, e.g. 'backbone.' of a detector)."""
    paths, prefix = [], None
    if pretrained is not None:
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be None or a checkpoint path, got {pretrained!r}")
        paths.append(os.fspath(pretrained))
    for item in ([] if init_cfg is None else init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]):
        if not isinstance(item, Mapping) or "type" not in item:
            raise TypeError(f"init_cfg must be a dict like dict(type='Pretrained', checkpoint=PATH) or a list "
                            f"of them, got {init_cfg!r}")
        if item["type"] in _INIT_TYPES_IGNORED:
            continue  # resbone's own init is already Kaiming for convs and constant for norms
        if item["type"] != "Pretrained":
            raise ValueError(f"init_cfg type {item['type']!r} is not supported; allowed: "
                             f"{['Pretrained', *_INIT_TYPES_IGNORED]}")
        unknown = sorted(set(item) - {"type", "checkpoint", "prefix"})
        if unknown or "checkpoint" not in item:
            raise KeyError(f"init_cfg {dict(item)!r}: 'Pretrained' takes type, checkpoint and optionally prefix "
                           f"(unsupported: {unknown})")
        paths.append(os.fspath(item["checkpoint"]))
        prefix = item.get("prefix", prefix)
    if len(set(paths)) > 1:
        raise ValueError(f"pretrained and init_cfg name different checkpoints {paths}; give one")
    return (paths[0] if paths else None), prefix


def _check_conv_cfg(conv_cfg: Any) -> None:
    if conv_cfg is None:
        return
    if not isinstance(conv_cfg, Mapping) or conv_cfg.get("type") not in _PLAIN_CONV_TYPES or len(conv_cfg) != 1:
        raise ValueError(f"conv_cfg {conv_cfg!r} is not supported: allowed are None, dict(type='Conv') and "
                         f"dict(type='Conv2d'); for deformable convs use dcn=dict(type='DCN'|'DCNv2') "
                         f"with stage_with_dcn")


def _scope_and_type(kwargs: dict[str, Any], scope: str | None) -> tuple[str, Any]:
    """mmengine's scope: build_backbone(scope=...), the config's `_scope_`, or a 'scope.Type' type name."""
    kind = kwargs.pop("type", None)
    named = [("scope", scope), ("_scope_", kwargs.pop("_scope_", None))]
    if isinstance(kind, str) and "." in kind:
        prefix, kind = kind.split(".", 1)
        named.append(("type prefix", prefix))
    given = {name: value for name, value in named if value is not None}
    for name, value in given.items():
        if value not in _SCOPES:
            raise ValueError(f"{name} {value!r} is not a scope resbone translates; allowed: {sorted(_SCOPES)}")
    if len(set(given.values())) > 1:
        raise ValueError(f"conflicting scopes {given}; give one")
    return next(iter(given.values()), "mmdet"), kind


def build_backbone(cfg: Mapping[str, Any], *, scope: str | None = None, load_pretrained: bool = True) -> nn.Module:
    """A backbone from an mmdetection or mmpretrain dict, e.g. dict(type='ResNet', depth=50, frozen_stages=1).

    The config's scope (`scope=`, its `_scope_`, or a 'mmpretrain.ResNet' type) picks the ecosystem whose
    types and defaults apply: 'mmdet' (the default; ResNet: out_indices=(0, 1, 2, 3), norm_eval=True,
    zero_init_residual=True) or 'mmpretrain' (adds SEResNet, SEResNeXt, ResNeXt with width_per_group;
    out_indices=(3,), norm_eval=False). `pretrained=PATH` or `init_cfg=dict(type='Pretrained',
    checkpoint=PATH)` load a checkpoint of any dialect through resbone.convert.load_checkpoint
    (strict=False, as mmdet); PATH may be an address (torchvision://resnet50, open-mmlab://resnet50_v1c,
    mmcls://..., https://...), fetched into torch hub's cache; load_pretrained=False skips loading.
    The result returns a tuple of out_indices maps and has `feature_info` / `out_channels`.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"an mmdetection backbone config must be a dict with a 'type' key, got {cfg!r}")
    kwargs = dict(cfg)
    scope, kind = _scope_and_type(kwargs, scope)
    types = _SCOPES[scope]
    if kind not in types:
        raise KeyError(f"backbone type {kind!r} is not supported in scope {scope!r}; allowed types are "
                       f"{sorted(types)}")
    defaults, fixed = types[kind]
    allowed = list(defaults) + (list(_RESBONE_RESNET_EXTRAS) if kind != "MobileNetV2" else [])
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{kind} got unknown argument(s) {unknown}; allowed arguments are {sorted(allowed)}")
    for name, value in fixed.items():
        if name in kwargs and kwargs[name] != value:
            raise ValueError(f"{kind} always has {name}={value!r}; got {name}={kwargs[name]!r} (use type='ResNet' "
                             f"to choose it)")
    options = dict(defaults, **kwargs)
    options.update(fixed)
    _check_conv_cfg(options.pop("conv_cfg"))
    if options.get("dcn") is not None:
        check_dcn(options["dcn"])  # even where stage_with_dcn leaves it unused: a typo should not pass
    checkpoint, prefix = _pretrained_path(options.pop("pretrained", None), options.pop("init_cfg"))
    model = _mmdet_mobilenet(options) if kind == "MobileNetV2" else _resnet(kind, options)
    if checkpoint is not None and load_pretrained:
        _load_pretrained(model, kind, checkpoint, prefix)
    return model


def _resnet(kind: str, options: dict[str, Any]) -> ResNet:
    depth = options.pop("depth")
    if depth is None:
        raise KeyError(f"{kind} needs depth (one of {', '.join(map(str, sorted(ARCH_SETTINGS)))})")
    if kind in _BOTTLENECK_ONLY and depth not in _BOTTLENECK_DEPTHS:
        raise KeyError(f"invalid depth {depth!r} for {kind}; allowed: {_BOTTLENECK_DEPTHS}")
    if "width_per_group" in options:  # mmpretrain's spelling of ResNeXt's base_width
        options["base_width"] = options.pop("width_per_group")
    if kind in ("ResNeXt", "SEResNeXt") and options["groups"] == 1:
        options["base_width"] = 64  # mmdet and mmpretrain: a ResNeXt block with groups=1 has width = planes
    if "se_ratio" in options:  # mmpretrain's SELayer: 1x1 convs with bias, channels // se_ratio rounded to 8
        options["se"] = dict(reduction=options.pop("se_ratio"), divisor=8)
    expansion = options.pop("expansion", None)
    if expansion is not None and is_int(depth) and depth in ARCH_SETTINGS:  # a bad depth: ResNet names it
        block = ARCH_SETTINGS[depth][0]
        if expansion != block.expansion:
            raise ValueError(f"{kind} expansion={expansion!r} is not supported; resbone's blocks expand by "
                             f"{block.expansion} at depth {depth} (leave expansion=None)")
    drop_path_rate = options.pop("drop_path_rate", 0.0)
    if drop_path_rate:
        raise ValueError(f"{kind} drop_path_rate={drop_path_rate!r} is not supported (stochastic depth); only 0.0")
    return ResNet(depth, num_classes=None, **options)


def _load_pretrained(model: nn.Module, kind: str, checkpoint: str, prefix: str | None) -> None:
    from resbone.convert import load_checkpoint  # convert sits above models and builders' inputs

    report = load_checkpoint(model, checkpoint, dialect="auto", strict=False, prefix=prefix)
    if not report.ok:  # mmdet/mmengine log what strict=False left out; staying silent hid a wrong file
        warnings.warn(f"{kind} pretrained {checkpoint!r} (dialect {report.dialect}) loaded "
                      f"{len(report.loaded)} tensors; {report.problems()}", stacklevel=3)


def _mmdet_mobilenet(options: dict[str, Any]) -> MobileNetV2:
    act_cfg = options.pop("act_cfg")
    if not (isinstance(act_cfg, Mapping) and dict(act_cfg) in ({"type": "ReLU6"}, {"type": "ReLU6", "inplace": True})):
        raise ValueError(f"MobileNetV2 act_cfg {act_cfg!r} is not supported; only dict(type='ReLU6') (the paper's)")
    return MobileNetV2(num_classes=None, width_mult=options.pop("widen_factor"), **options)

