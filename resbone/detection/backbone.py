"""FCOS / maskrcnn-benchmark's backbone bodies: MODEL.BACKBONE.CONV_BODY and MODEL.RESNETS -> a resbone ResNet.

Anchor: tianzhi0549/FCOS `modeling/backbone/resnet.py`, `backbone.py`, `mobilenet.py` (StageSpecs per
CONV_BODY, STEM_FUNC / TRANS_FUNC, STRIDE_IN_1X1, NUM_GROUPS x WIDTH_PER_GROUP, FREEZE_CONV_BODY_AT,
FrozenBatchNorm2d without eps, GroupNorm from MODEL.GROUP_NORM). The config is translated once into the
plain keyword arguments of `ResNet` / `MobileNetV2`; every key is read from the config (declared with
FCOS's defaults in resbone.detection.defaults), none is defaulted here.
Reference test: tests/detection/test_backbone.py (C3-C5 strides and channels, freezing, torchvision's
resnet50 with FrozenBatchNorm2d computes the same maps, every bad input's error).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

from torch import nn

from resbone.detection.defaults import require_keys
from resbone.models.mobilenetv2 import STAGE_ENDS, MobileNetV2
from resbone.models.resnet import ARCH_SETTINGS, ResNet
from resbone.utils.checks import check_int, is_int

__all__ = ["FCOS_CONV_BODIES", "build_fcos_backbone"]

# CONV_BODY -> (depth or 'MNV2', stage count, out_indices). FCOS's RETINANET bodies return C2-C5 and
# its FPN ignores C2 (in_channels 0); resbone's return C3-C5 only, the maps the FPN uses.
FCOS_CONV_BODIES: dict[str, tuple[Any, int, tuple[int, ...]]] = {
    "R-50-C4": (50, 3, (2,)), "R-50-C5": (50, 4, (3,)),
    "R-101-C4": (101, 3, (2,)), "R-101-C5": (101, 4, (3,)),
    "R-50-FPN": (50, 4, (0, 1, 2, 3)), "R-50-FPN-RETINANET": (50, 4, (1, 2, 3)),
    # resbone's small bodies (not in FCOS): BasicBlock stages, RES2_OUT_CHANNELS 64
    "R-18-FPN-RETINANET": (18, 4, (1, 2, 3)), "R-34-FPN-RETINANET": (34, 4, (1, 2, 3)),
    "R-101-FPN": (101, 4, (0, 1, 2, 3)), "R-101-FPN-RETINANET": (101, 4, (1, 2, 3)),
    "R-152-FPN": (152, 4, (0, 1, 2, 3)),
    # FCOS's MobileNetV2 returns features 3/6/13/17 (= stages 1, 2, 4, 6); the RETINANET FPN uses the last 3.
    "MNV2-FPN": ("MNV2", 7, (1, 2, 4, 6)), "MNV2-FPN-RETINANET": ("MNV2", 7, (2, 4, 6)),
}
_FCOS_NORMS = {"StemWithFixedBatchNorm": "FrozenBN", "StemWithGN": "GN",
               "BottleneckWithFixedBatchNorm": "FrozenBN", "BottleneckWithGN": "GN"}


def _group_norm(num_features: int, *, dim_per_gp: int, num_groups: int, eps: float) -> nn.GroupNorm:
    """maskrcnn-benchmark's group_norm: groups = channels // DIM_PER_GP, or NUM_GROUPS."""
    groups = num_features // dim_per_gp if dim_per_gp > 0 else num_groups
    if groups < 1 or num_features % groups:
        raise ValueError(f"MODEL.GROUP_NORM gives {groups} groups for {num_features} channels (not a divisor)")
    return nn.GroupNorm(groups, num_features, eps=eps)


def _fcos_norm(resnets: Mapping[str, Any], group_norm: Mapping[str, Any], frozen_bn_eps: float) -> Any:
    stem, trans = resnets["STEM_FUNC"], resnets["TRANS_FUNC"]
    for key, value, allowed in (("STEM_FUNC", stem, ("StemWithFixedBatchNorm", "StemWithGN")),
                                ("TRANS_FUNC", trans, ("BottleneckWithFixedBatchNorm", "BottleneckWithGN"))):
        if value not in allowed:
            raise KeyError(f"MODEL.RESNETS.{key} {value!r} is not supported; allowed: {list(allowed)}")
    if _FCOS_NORMS[stem] != _FCOS_NORMS[trans]:
        raise ValueError(f"MODEL.RESNETS.STEM_FUNC {stem!r} and TRANS_FUNC {trans!r} use different norms; resbone "
                         f"builds one norm for the whole body: pair StemWithFixedBatchNorm with "
                         f"BottleneckWithFixedBatchNorm, or StemWithGN with BottleneckWithGN")
    if _FCOS_NORMS[stem] == "FrozenBN":
        # FCOS's FrozenBatchNorm2d has no eps (weight * running_var.rsqrt()); torchvision's has 1e-5.
        return dict(type="FrozenBN", eps=frozen_bn_eps)
    dim_per_gp, num_groups = int(group_norm["DIM_PER_GP"]), int(group_norm["NUM_GROUPS"])
    if (dim_per_gp > 0) == (num_groups > 0):
        raise ValueError(f"MODEL.GROUP_NORM: exactly one of DIM_PER_GP ({dim_per_gp}) and NUM_GROUPS "
                         f"({num_groups}) must be -1")
    return functools.partial(_group_norm, dim_per_gp=dim_per_gp, num_groups=num_groups,
                             eps=float(group_norm["EPSILON"]))


def _fcos_bool_list(name: str, value: Any, length: int) -> tuple[bool, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != length:
        raise ValueError(f"{name} must be a list of {length} booleans (one per stage), got {value!r}")
    return tuple(bool(v) for v in value)


def _fcos_mobilenet(freeze_at: int, out_indices: tuple[int, ...]) -> MobileNetV2:
    # FCOS freezes features[0:FREEZE_CONV_BODY_AT]; that is a whole number of stages only at stage ends.
    allowed = {0: -1, 1: 0, **{end + 1: stage + 1 for stage, end in enumerate(STAGE_ENDS[:7])}}
    if freeze_at not in allowed:
        raise ValueError(f"MODEL.BACKBONE.FREEZE_CONV_BODY_AT={freeze_at} freezes part of a MobileNetV2 stage; "
                         f"allowed: {sorted(allowed)}")
    return MobileNetV2(num_classes=None, out_indices=out_indices, frozen_stages=min(allowed[freeze_at], 7))


def _fcos_dcn(resnets: Mapping[str, Any], num_stages: int) -> tuple[dict | None, tuple[bool, ...]]:
    stage_with_dcn = _fcos_bool_list("MODEL.RESNETS.STAGE_WITH_DCN", resnets["STAGE_WITH_DCN"], 4)[:num_stages]
    deform_groups = resnets["DEFORMABLE_GROUPS"]
    check_int("MODEL.RESNETS.DEFORMABLE_GROUPS", deform_groups)
    if not any(stage_with_dcn):
        return None, stage_with_dcn
    return dict(type="DCNv2" if resnets["WITH_MODULATED_DCN"] else "DCN", deform_groups=deform_groups), stage_with_dcn


def build_fcos_backbone(cfg: Mapping[str, Any]) -> nn.Module:
    """The backbone body FCOS's MODEL.BACKBONE.CONV_BODY names, from a config holding FCOS's keys
    (resbone.detection.defaults.detector_cfg() or resbone.detection.config.get_cfg(), with your values).

    Returns a resbone ResNet / MobileNetV2 with num_classes=None whose forward gives the maps the FCOS body
    returns (C3-C5 for *-RETINANET, C2-C5 for *-FPN, C4 / C5 for -C4 / -C5) and whose `feature_info` lists
    their channels and strides; the FPN is built by the detector.
    """
    require_keys(cfg, "MODEL.BACKBONE", "MODEL.RESNETS", "MODEL.GROUP_NORM", reader="build_fcos_backbone")
    backbone, resnets = cfg["MODEL"]["BACKBONE"], cfg["MODEL"]["RESNETS"]
    body = backbone["CONV_BODY"]
    if body not in FCOS_CONV_BODIES:
        raise KeyError(f"MODEL.BACKBONE.CONV_BODY {body!r} is not supported; allowed: {sorted(FCOS_CONV_BODIES)}")
    depth, num_stages, out_indices = FCOS_CONV_BODIES[body]
    freeze_at = backbone["FREEZE_CONV_BODY_AT"]
    if not is_int(freeze_at) or freeze_at < 0:
        raise ValueError(f"MODEL.BACKBONE.FREEZE_CONV_BODY_AT must be an int >= 0 (2 = stem + layer1), "
                         f"got {freeze_at!r}")
    if depth == "MNV2":
        return _fcos_mobilenet(freeze_at, out_indices)
    if freeze_at > num_stages + 1:
        raise ValueError(f"MODEL.BACKBONE.FREEZE_CONV_BODY_AT={freeze_at} exceeds the {num_stages} stages + stem "
                         f"of {body!r}; allowed 0..{num_stages + 1}")
    res2 = resnets["RES2_OUT_CHANNELS"]
    check_int("MODEL.RESNETS.RES2_OUT_CHANNELS", res2)
    if ARCH_SETTINGS[depth][0].expansion == 1:
        # BasicBlock bodies: res2 has RES2_OUT_CHANNELS channels and every later stage doubles it, as in
        # maskrcnn-benchmark (stage i: RES2_OUT_CHANNELS * 2**i); 64 is torchvision's ResNet-18/34.
        if res2 % 8:
            raise ValueError(f"MODEL.RESNETS.RES2_OUT_CHANNELS={res2} for {body!r} must be a multiple of 8")
        base_channels = res2
    elif res2 != 256:
        raise ValueError(f"MODEL.RESNETS.RES2_OUT_CHANNELS={res2} does not fit {body!r}: ResNet-50/101/152 "
                         f"bodies have 256 (64 x expansion 4; the bottleneck width is NUM_GROUPS x "
                         f"WIDTH_PER_GROUP); set MODEL.RESNETS.RES2_OUT_CHANNELS 256")
    else:
        base_channels = 64
    dilation = resnets["RES5_DILATION"]
    if dilation not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {dilation!r}")
    dcn, stage_with_dcn = _fcos_dcn(resnets, num_stages)
    # maskrcnn-benchmark's dilated res5 keeps stride 1 in every block, shortcut included.
    strides = (1, 2, 2, 2 if dilation == 1 else 1)[:num_stages]
    dilations = (1, 1, 1, dilation)[:num_stages]
    norm_cfg = _fcos_norm(resnets, cfg["MODEL"]["GROUP_NORM"], float(backbone["FROZEN_BN_EPS"]))
    return ResNet(depth, num_classes=None, num_stages=num_stages, out_indices=out_indices,
                  stem_channels=int(resnets["STEM_OUT_CHANNELS"]), base_channels=base_channels, strides=strides,
                  dilations=dilations,
                  style="caffe" if resnets["STRIDE_IN_1X1"] else "pytorch",
                  groups=int(resnets["NUM_GROUPS"]), base_width=int(resnets["WIDTH_PER_GROUP"]),
                  norm_cfg=norm_cfg, dcn=dcn, stage_with_dcn=stage_with_dcn, frozen_stages=freeze_at - 1)
