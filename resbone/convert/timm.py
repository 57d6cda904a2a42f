"""timm's names <-> resbone's.

ResNet family (resnet*, resnext*, seresnet*, resnet*c/d, ...): identical to native except the deep
stem, which timm keeps inside `conv1` (an nn.Sequential conv,bn,act,conv,bn,act,conv) and `bn1`:
timm `conv1.0/1/3/4/6` + `bn1` <-> native `stem.0/1/3/4/6/7`. timm's SE (`se.fc1/fc2`, 1x1 convs),
avg_down shortcut (`downsample.1/2`) and classifier (`fc`) already have native names.
MobileNetV2 (`mobilenetv2_100`, EfficientNet-style builder) <-> torchvision's `features.N` layout:
`conv_stem`/`bn1` = features.0, `blocks.0.0` (depthwise-separable: conv_dw, bn1, conv_pw, bn2) =
features.1, `blocks.s.b` (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3) = features.2..17,
`conv_head`/`bn2` = features.18, `classifier` = classifier.1.

Anchor: timm `models/resnet.py` (create_aux_stem / deep stem) and `models/_efficientnet_blocks.py`.
Reference tests: tests/convert/test_reference_models.py (timm resnet50d, seresnet50, resnext50_32x4d,
mobilenetv2_100 -> resbone: same outputs; back: identical state dicts).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from resbone.convert.common import MBV2_BLOCK as _MBV2_BLOCK
from resbone.convert.common import MBV2_FEATURE as _MBV2_FEATURE
from resbone.convert.common import StateDict, rename

__all__ = ["from_native", "to_native"]

# first block (expand ratio 1): depthwise conv + bn, pointwise-linear conv + bn
_DS_TO_TV = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_IR_TO_TV = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1",
             "conv_pwl": "conv.2", "bn3": "conv.3"}
_DS_FROM_TV = {v: k for k, v in _DS_TO_TV.items()}
_IR_FROM_TV = {v: k for k, v in _IR_TO_TV.items()}
_DEEP_STEM_TO_NATIVE = {"conv1.0": "stem.0", "conv1.1": "stem.1", "conv1.3": "stem.3", "conv1.4": "stem.4",
                        "conv1.6": "stem.6", "bn1": "stem.7"}
_DEEP_STEM_FROM_NATIVE = {v: k for k, v in _DEEP_STEM_TO_NATIVE.items()}


def _module_map(key: str, table: Mapping[str, str]) -> str | None:
    """Rename the leading module of `key` through `table` ('conv1.0.weight' -> 'stem.0.weight')."""
    for old, new in table.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    return None


def _mbv2_to_native(key: str) -> str:
    if key.startswith(("conv_stem.", "bn1.")):
        return {"conv_stem": "features.0.0", "bn1": "features.0.1"}[key.split(".")[0]] + key[key.index("."):]
    if key.startswith(("conv_head.", "bn2.")):
        return {"conv_head": "features.18.0", "bn2": "features.18.1"}[key.split(".")[0]] + key[key.index("."):]
    if key.startswith("classifier."):
        return "classifier.1." + key[len("classifier."):]
    m = re.match(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)$", key)
    if m and (int(m.group(1)), int(m.group(2))) in _MBV2_FEATURE:
        table = _DS_TO_TV if m.group(1) == "0" else _IR_TO_TV
        if m.group(3) in table:
            return f"features.{_MBV2_FEATURE[int(m.group(1)), int(m.group(2))]}.{table[m.group(3)]}.{m.group(4)}"
    return key


def _mbv2_from_native(key: str) -> str:
    m = re.match(r"features\.(\d+)\.(.+)$", key)
    if m is None:
        return "classifier." + key[len("classifier.1."):] if key.startswith("classifier.1.") else key
    index, rest = int(m.group(1)), m.group(2)
    if index in (0, 18):
        stem = {0: ("conv_stem", "bn1"), 18: ("conv_head", "bn2")}[index]
        sub = re.match(r"([01])\.(.+)$", rest)
        return f"{stem[int(sub.group(1))]}.{sub.group(2)}" if sub else key
    if index in _MBV2_BLOCK:
        stage, block = _MBV2_BLOCK[index]
        table = _DS_FROM_TV if stage == 0 else _IR_FROM_TV
        for tv, timm in sorted(table.items(), key=lambda item: -len(item[0])):
            if rest.startswith(tv + "."):
                return f"blocks.{stage}.{block}.{timm}{rest[len(tv):]}"
    return key


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm -> resbone."""
    if "conv_stem.weight" in state_dict:
        return rename(state_dict, _mbv2_to_native, dialect="timm")
    if "conv1.0.weight" in state_dict:  # deep stem
        return rename(state_dict, lambda k: _module_map(k, _DEEP_STEM_TO_NATIVE) or k, dialect="timm")
    return dict(state_dict)


def from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> timm."""
    if any(k.startswith(("backbone.", "fpn.", "head.")) for k in state_dict):
        raise ValueError("timm has no detector; export the backbone alone (keys without 'backbone.') "
                         "or pick a detector dialect: torchvision, mmdet, detectron2, maskrcnn")
    if "features.0.0.weight" in state_dict:
        return rename(state_dict, _mbv2_from_native, dialect="timm")
    if "stem.0.weight" in state_dict:
        return rename(state_dict, lambda k: _module_map(k, _DEEP_STEM_FROM_NATIVE) or k, dialect="timm")
    return dict(state_dict)
