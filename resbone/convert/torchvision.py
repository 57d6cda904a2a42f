"""torchvision's names <-> resbone's: identical for ResNet / ResNeXt / Wide-ResNet / MobileNetV2
(native names ARE torchvision's); the FCOS detector (`fcos_resnet50_fpn`) differs in its FPN and head.
Structures torchvision has no model for (deep stem, avg_down, SE, DCN, IBN) keep their native names.

Anchor: torchvision `models/detection/{fcos,backbone_utils}.py` and `ops/feature_pyramid_network.py`.
Reference tests: tests/convert/test_dialects.py (torchvision fcos_resnet50_fpn -> resbone FCOS and back,
bit-exact) and tests/detection/test_torchvision_equality.py (same outputs).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from resbone.convert.common import StateDict, check_scalar_one, rename, rules, sub_all

__all__ = ["fcos_from_torchvision", "fcos_to_torchvision", "from_native", "to_native"]

# torchvision's head towers are flat Sequentials (conv, GroupNorm, ReLU) x 4, as FCOS's: same indices.
_FCOS_TO_NATIVE = rules(
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.0\.", r"fpn.\1.\2."),
    (r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.", r"fpn.\1."),
    (r"^head\.classification_head\.conv\.", "head.cls_tower."),
    (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
    (r"^head\.regression_head\.conv\.", "head.bbox_tower."),
    (r"^head\.regression_head\.bbox_reg\.", "head.bbox_pred."),
    (r"^head\.regression_head\.bbox_ctrness\.", "head.centerness."),
)
_FCOS_FROM_NATIVE = rules(
    (r"^backbone\.", "backbone.body."),
    (r"^fpn\.(inner_blocks|layer_blocks)\.(\d+)\.", r"backbone.fpn.\1.\2.0."),
    (r"^fpn\.(p6|p7)\.", r"backbone.fpn.extra_blocks.\1."),
    (r"^head\.cls_tower\.", "head.classification_head.conv."),
    (r"^head\.cls_logits\.", "head.classification_head.cls_logits."),
    (r"^head\.bbox_tower\.", "head.regression_head.conv."),
    (r"^head\.bbox_pred\.", "head.regression_head.bbox_reg."),
    (r"^head\.centerness\.", "head.regression_head.bbox_ctrness."),
)


def is_fcos(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("head.classification_head.", "backbone.fpn.extra_blocks.", "backbone.body."))
               for k in state_dict)


def fcos_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision `fcos_resnet50_fpn` state dict -> resbone FCOS state dict.

    torchvision's FCOS has no per-level Scale (it is FCOS with scales fixed at 1), so every
    `head.scales.{l}.scale` is created as tensor([1.0]), one per pyramid level."""
    out = rename(state_dict, lambda k: sub_all(k, _FCOS_TO_NATIVE), dialect="torchvision")
    inner = {m.group(1) for k in out if (m := re.match(r"fpn\.inner_blocks\.(\d+)\.weight$", k))}
    levels = len(inner) + ("fpn.p6.weight" in out) + ("fpn.p7.weight" in out)
    reference = next((v for k, v in out.items() if k.startswith("head.")), None)
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    for level in range(levels if reference is not None else 0):
        out.setdefault(f"head.scales.{level}.scale", torch.ones(1, dtype=dtype))
    return out


def fcos_to_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone FCOS state dict -> torchvision `fcos_resnet50_fpn` names; the scales are dropped, which
    is only exact when they are all 1.0 (otherwise a ValueError: torchvision cannot express them)."""
    def key(k: str) -> str | None:
        if re.match(r"head\.scales\.\d+\.scale$", k):
            check_scalar_one(state_dict[k], k, "torchvision FCOS")
            return None
        return sub_all(k, _FCOS_FROM_NATIVE)

    return rename(state_dict, key, dialect="torchvision")


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision -> resbone: FCOS is renamed, everything else already has native names."""
    return fcos_from_torchvision(state_dict) if is_fcos(state_dict) else dict(state_dict)


def from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> torchvision: a native detector (`fpn.*` / `head.*` keys) becomes torchvision FCOS."""
    detector = any(k.startswith(("fpn.", "head.", "backbone.")) for k in state_dict)
    return fcos_to_torchvision(state_dict) if detector else dict(state_dict)
