"""detectron2's names <-> resbone's.

detectron2 ResNet: stem `stem.conv1` with its norm inside the conv (`stem.conv1.norm`), stages
`res2..res5` (= layer1..layer4), blocks `convK` + `convK.norm`, shortcut `shortcut` + `shortcut.norm`,
deformable conv2 with a sibling offset conv `conv2_offset`, classifier `linear`. The DeepLab deep stem
(projects/DeepLab) is `stem.conv1/2/3` (+ `.norm`). Inside a detector the backbone is
`backbone.bottom_up.`, the FPN `backbone.fpn_lateral{stage}` / `backbone.fpn_output{stage}` /
`backbone.top_block.p6/p7`, and AdelaiDet's FCOS head `proposal_generator.fcos_head.{cls_tower,
bbox_tower, cls_logits, bbox_pred, ctrness, scales}`. detectron2 has no avg_down shortcut.

Anchors: detectron2 `modeling/backbone/{resnet,fpn}.py`, `tools/convert-torchvision-to-d2.py`,
AdelaiDet `adet/modeling/fcos/fcos.py`. Reference tests: tests/convert/test_dialects.py.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from resbone.convert.common import (
    StateDict,
    add_prefix,
    native_fpn_levels,
    rename,
    rules,
    split_native,
    strip_prefix,
    sub_all,
)

__all__ = ["from_native", "to_native"]

_BODY_FROM_NATIVE = rules(
    (r"^conv1\.", "stem.conv1."),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^stem\.0\.", "stem.conv1."), (r"^stem\.1\.", "stem.conv1.norm."),
    (r"^stem\.3\.", "stem.conv2."), (r"^stem\.4\.", "stem.conv2.norm."),
    (r"^stem\.6\.", "stem.conv3."), (r"^stem\.7\.", "stem.conv3.norm."),
    (r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}."),
    (r"^(res\d\.\d+)\.bn([123])\.", r"\1.conv\2.norm."),
    (r"^(res\d\.\d+)\.conv2\.conv_offset\.", r"\1.conv2_offset."),
    (r"^(res\d\.\d+)\.downsample\.0\.", r"\1.shortcut."),
    (r"^(res\d\.\d+)\.downsample\.1\.", r"\1.shortcut.norm."),
    (r"^fc\.", "linear."),
)
_BODY_TO_NATIVE = rules(
    (r"^res(\d)\.", lambda m: f"layer{int(m.group(1)) - 1}."),
    (r"^(layer\d\.\d+)\.conv([123])\.norm\.", r"\1.bn\2."),
    (r"^(layer\d\.\d+)\.conv2_offset\.", r"\1.conv2.conv_offset."),
    (r"^(layer\d\.\d+)\.shortcut\.norm\.", r"\1.downsample.1."),
    (r"^(layer\d\.\d+)\.shortcut\.", r"\1.downsample.0."),
    (r"^linear\.", "fc."),
)
_STEM_TO_NATIVE = rules((r"^stem\.conv1\.norm\.", "bn1."), (r"^stem\.conv1\.", "conv1."))
_DEEP_STEM_TO_NATIVE = rules(
    (r"^stem\.conv([123])\.norm\.", lambda m: f"stem.{3 * int(m.group(1)) - 2}."),
    (r"^stem\.conv([123])\.", lambda m: f"stem.{3 * int(m.group(1)) - 3}."),
)
_HEAD = "proposal_generator.fcos_head."


def _body_from_native(body: Mapping[str, torch.Tensor]) -> StateDict:
    avg_down = sorted(k for k in body if re.match(r"layer\d+\.\d+\.downsample\.2\.", k))
    if avg_down:
        raise ValueError(f"detectron2 has no avg_down shortcut (AvgPool + conv + norm, e.g. {avg_down[0]!r}); "
                         "export this model to timm, mmdet or torchvision names instead")
    return rename(body, lambda k: sub_all(k, _BODY_FROM_NATIVE), dialect="detectron2")


def _body_to_native(body: Mapping[str, torch.Tensor]) -> StateDict:
    stem = _DEEP_STEM_TO_NATIVE if "stem.conv2.weight" in body else _STEM_TO_NATIVE
    return rename(body, lambda k: sub_all(sub_all(k, stem), _BODY_TO_NATIVE), dialect="detectron2")


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """detectron2 (bare backbone/classifier, or a detector with `backbone.bottom_up.`) -> resbone."""
    if any(k.startswith("backbone.bottom_up.") for k in state_dict):
        body_prefix = "backbone.bottom_up."
    elif any(k.startswith("backbone.") for k in state_dict):
        body_prefix = "backbone."
    else:
        return _body_to_native(state_dict)
    body = _body_to_native(strip_prefix(state_dict, body_prefix))
    rest = {k: v for k, v in state_dict.items() if not k.startswith(body_prefix)}
    laterals = sorted({int(m.group(1)) for k in rest if (m := re.match(r"backbone\.fpn_lateral(\d)\.", k))})
    first = laterals[0] if laterals else 0

    def key(k: str) -> str:
        k = re.sub(r"^backbone\.fpn_lateral(\d)\.", lambda m: f"fpn.inner_blocks.{int(m.group(1)) - first}.", k)
        k = re.sub(r"^backbone\.fpn_output(\d)\.", lambda m: f"fpn.layer_blocks.{int(m.group(1)) - first}.", k)
        k = re.sub(r"^backbone\.top_block\.(p6|p7)\.", r"fpn.\1.", k)
        if k.startswith(_HEAD):
            k = "head." + k[len(_HEAD):]
            k = re.sub(r"^head\.ctrness\.", "head.centerness.", k)
        return k

    return {**add_prefix(body, "backbone."), **rename(rest, key, dialect="detectron2")}


def from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> detectron2: a backbone gets bare d2 names; a native FCOS detector gets
    `backbone.bottom_up.` + d2 FPN names + AdelaiDet's FCOS head names."""
    body, rest, detector = split_native(state_dict)
    body = _body_from_native(body)
    if not detector:
        return body
    levels = native_fpn_levels(rest)
    first_stage = 6 - levels  # C3..C5 -> fpn_lateral3..5; C2..C5 -> fpn_lateral2..5

    def key(k: str) -> str:
        k = re.sub(r"^fpn\.inner_blocks\.(\d+)\.", lambda m: f"backbone.fpn_lateral{int(m.group(1)) + first_stage}.", k)
        k = re.sub(r"^fpn\.layer_blocks\.(\d+)\.", lambda m: f"backbone.fpn_output{int(m.group(1)) + first_stage}.", k)
        k = re.sub(r"^fpn\.(p6|p7)\.", r"backbone.top_block.\1.", k)
        if k.startswith("head."):
            k = _HEAD + re.sub(r"^centerness\.", "ctrness.", k[len("head."):])
        return k

    return {**add_prefix(body, "backbone.bottom_up."), **rename(rest, key, dialect="detectron2")}
