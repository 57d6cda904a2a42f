"""maskrcnn-benchmark / FCOS names <-> resbone's.

Everything lives in a GeneralizedRCNN: the backbone under `backbone.body.` with the stem in
`stem.conv1` / `stem.bn1` (FrozenBatchNorm2d: weight, bias, running_mean, running_var and no
num_batches_tracked), blocks with torchvision's names, and a deformable conv2 as DFConv2d
(`conv2.conv.weight` + `conv2.offset.*`); the FPN `backbone.fpn.fpn_inner{k}` / `fpn_layer{k}`
(k counts C2..C5 as 1..4, so FCOS's C3..C5 are 2..4) and `backbone.fpn.top_blocks.p6/p7`; FCOS's head
`rpn.head.{cls_tower, bbox_tower, cls_logits, bbox_pred, centerness, scales.N.scale}`.
No deep stem and no avg_down shortcut exist there (exporting them is an error). FCOS's MobileNetV2
body (tonylins' pytorch-mobilenet-v2) keeps `features.N` but flattens each block's Sequential:
`conv.0/1` (pw conv, bn), `conv.3/4` (dw), `conv.6/7` (pw-linear) where torchvision nests
`conv.0.0/0.1`, `conv.1.0/1.1`, `conv.2/3` (block 1, no expansion: `conv.0/1` dw, `conv.3/4` pw-linear).

Anchors: FCOS `fcos_core/modeling/backbone/{resnet,fpn}.py`, `modeling/rpn/fcos/fcos.py`,
`layers/misc.py` (DFConv2d). Reference tests: tests/convert/test_dialects.py.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from resbone.convert.common import StateDict, native_fpn_levels, rename, split_native

__all__ = ["from_native", "to_native"]


def _dcn_convs(state_dict: Mapping[str, torch.Tensor], offset: str) -> set[str]:
    """Prefixes ('...conv2.') of the deformable convs, found by their offset predictor `offset`."""
    suffix = f"{offset}.weight"
    return {k[: -len(suffix)] for k in state_dict if k.endswith("." + suffix)}


_MBV2_FIRST = {"conv.0.": "conv.0.0.", "conv.1.": "conv.0.1.", "conv.3.": "conv.1.", "conv.4.": "conv.2."}
_MBV2_BLOCK = {"conv.0.": "conv.0.0.", "conv.1.": "conv.0.1.", "conv.3.": "conv.1.0.", "conv.4.": "conv.1.1.",
               "conv.6.": "conv.2.", "conv.7.": "conv.3."}


def _mbv2(key: str, to_native: bool) -> str:
    m = re.match(r"((?:backbone\.(?:body\.)?)?features\.(\d+)\.)(conv\..+)$", key)
    if m is None or m.group(2) == "0":
        return key
    table = _MBV2_FIRST if m.group(2) == "1" else _MBV2_BLOCK
    pairs = table.items() if to_native else ((v, k) for k, v in table.items())
    for old, new in sorted(pairs, key=lambda pair: -len(pair[0])):
        if m.group(3).startswith(old):
            return m.group(1) + new + m.group(3)[len(old):]
    return key


def _check_structure(body: Mapping[str, torch.Tensor]) -> None:
    for pattern, what in ((r"stem\.\d+\.", "deep stem (three 3x3 convs)"),
                          (r"layer\d+\.\d+\.downsample\.2\.", "avg_down shortcut (AvgPool + conv + norm)")):
        found = sorted(k for k in body if re.match(pattern, k))
        if found:
            raise ValueError(f"maskrcnn-benchmark / FCOS has no {what}, found {found[0]!r}; export this model "
                             "to timm, mmdet or torchvision names instead")


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """maskrcnn-benchmark / FCOS -> resbone. A checkpoint holding only `backbone.body.*` becomes a bare
    backbone; one with an FPN or FCOS head becomes a native detector."""
    dcn = _dcn_convs(state_dict, "offset")
    flat_mbv2 = "backbone.body.features.1.conv.3.weight" in state_dict
    detector = any(not k.startswith("backbone.body.") for k in state_dict)
    first = min((int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.fpn\.fpn_inner(\d)\.", k))),
                default=0)

    def key(k: str) -> str:
        if flat_mbv2:
            k = _mbv2(k, to_native=True)
        for conv in dcn:
            if k.startswith(conv + "conv."):
                k = conv + k[len(conv) + 5:]
            elif k.startswith(conv + "offset."):
                k = conv + "conv_offset." + k[len(conv) + 7:]
        k = re.sub(r"^backbone\.body\.stem\.(conv1|bn1)\.", r"backbone.body.\1.", k)
        if not detector and k.startswith("backbone.body."):
            return k[len("backbone.body."):]
        k = re.sub(r"^backbone\.body\.", "backbone.", k)
        k = re.sub(r"^backbone\.fpn\.fpn_inner(\d)\.", lambda m: f"fpn.inner_blocks.{int(m.group(1)) - first}.", k)
        k = re.sub(r"^backbone\.fpn\.fpn_layer(\d)\.", lambda m: f"fpn.layer_blocks.{int(m.group(1)) - first}.", k)
        k = re.sub(r"^backbone\.fpn\.top_blocks\.(p6|p7)\.", r"fpn.\1.", k)
        return re.sub(r"^rpn\.head\.", "head.", k)

    return rename(state_dict, key, dialect="maskrcnn")


def from_native(state_dict: Mapping[str, torch.Tensor], *, num_batches_tracked: bool = False) -> StateDict:
    """resbone -> maskrcnn-benchmark / FCOS (always under `backbone.body.`, as a GeneralizedRCNN holds it).
    `num_batches_tracked=False` drops BatchNorm's counters, which FrozenBatchNorm2d does not have."""
    body, rest, detector = split_native(state_dict)
    _check_structure(body)
    dcn = _dcn_convs(state_dict, "conv_offset")
    first = 5 - native_fpn_levels(rest)  # FCOS's C3..C5 -> fpn_inner2..4; C2..C5 -> 1..4

    def key(k: str) -> str | None:
        if not num_batches_tracked and k.endswith(".num_batches_tracked"):
            return None
        for conv in dcn:
            if k.startswith(conv + "conv_offset."):
                k = conv + "offset." + k[len(conv) + 12:]
            elif k.startswith(conv) and k[len(conv):] in ("weight", "bias"):
                k = conv + "conv." + k[len(conv):]
        if not detector:
            k = "backbone." + k
        k = _mbv2(k, to_native=False)
        k = re.sub(r"^backbone\.(conv1|bn1)\.", r"backbone.stem.\1.", k)
        k = re.sub(r"^backbone\.", "backbone.body.", k)
        k = re.sub(r"^fpn\.inner_blocks\.(\d+)\.", lambda m: f"backbone.fpn.fpn_inner{int(m.group(1)) + first}.", k)
        k = re.sub(r"^fpn\.layer_blocks\.(\d+)\.", lambda m: f"backbone.fpn.fpn_layer{int(m.group(1)) + first}.", k)
        k = re.sub(r"^fpn\.(p6|p7)\.", r"backbone.fpn.top_blocks.\1.", k)
        return re.sub(r"^head\.", "rpn.head.", k)

    return rename(state_dict, key, dialect="maskrcnn")
