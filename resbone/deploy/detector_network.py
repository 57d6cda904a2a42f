"""The dense part of an FCOS detector (backbone + FPN + head) as one traceable module, for int8: the detector's
own network (resbone.detection.fcos) with the shared head unrolled into one copy per pyramid level.

Anchor: resbone.detection.detector.FCOS's network method and FCOSHead.forward, which these modules compute with
the same weights. Reference test: tests/deploy/test_quantize.py (DetectorNetwork's float outputs equal the
detector's own, level by level).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["DetectorNetwork"]


class _LevelHead(nn.Module):
    """The FCOS head (resbone.detection.fcos.FCOSHead.forward) on one pyramid level, with its own copy of the
    shared towers: a quantized conv has one output scale, and the levels' activations differ in range."""

    def __init__(self, head: nn.Module, level: int):
        super().__init__()
        self.cls_tower, self.bbox_tower = copy.deepcopy(head.cls_tower), copy.deepcopy(head.bbox_tower)
        self.cls_logits, self.bbox_pred = copy.deepcopy(head.cls_logits), copy.deepcopy(head.bbox_pred)
        self.centerness, self.scale = copy.deepcopy(head.centerness), copy.deepcopy(head.scales[level])
        self.stride, self.centerness_on_reg = head.strides[level], head.centerness_on_reg
        self.norm_reg_targets = head.norm_reg_targets

    def forward(self, feature: torch.Tensor):
        cls_feature, reg_feature = self.cls_tower(feature), self.bbox_tower(feature)
        centerness = self.centerness(reg_feature if self.centerness_on_reg else cls_feature)
        reg = self.scale(self.bbox_pred(reg_feature))
        reg = torch.relu(reg) * self.stride if self.norm_reg_targets else torch.exp(reg)
        return self.cls_logits(cls_feature), reg, centerness


class DetectorNetwork(nn.Module):
    """The dense part of an FCOS detector as one module: a normalized batch -> (logits, regression,
    centerness) lists over the pyramid levels, what the detector's network method returns; the shared head
    is unrolled into one copy per level (same weights) for quantization."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.backbone, self.fpn = detector.backbone, detector.fpn
        self.heads = nn.ModuleList(_LevelHead(detector.head, level) for level in range(len(detector.head.strides)))
        self.feature_indices = tuple(detector.feature_indices)

    def forward(self, batch: torch.Tensor):
        features = self.backbone(batch)
        pyramid = self.fpn([features[i] for i in self.feature_indices])
        outputs = [head(feature) for head, feature in zip(self.heads, pyramid)]
        return tuple([level[k] for level in outputs] for k in range(3))
