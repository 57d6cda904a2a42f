"""The dialect table: each ecosystem's pair of functions (to resbone, from resbone), and
`convert_state_dict`, which goes from any dialect to any other through the native names.

Reference tests: tests/convert/test_dialects.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from resbone.convert import caffe2, detectron2, maskrcnn, mmdet, timm, torchvision
from resbone.convert.common import StateDict

__all__ = ["DIALECTS", "Dialect", "convert_state_dict", "resolve_dialect"]


@dataclass(frozen=True)
class Dialect:
    name: str
    to_native: Callable[..., StateDict]
    from_native: Callable[..., StateDict]
    about: str


def _identity(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return dict(state_dict)


# Order matters: when several dialects explain a state dict equally well, the first one wins.
DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect("resbone", _identity, _identity, "resbone's own names (= torchvision's for backbones)"),
    Dialect("torchvision", torchvision.to_native, torchvision.from_native,
            "torchvision ResNet/ResNeXt/Wide-ResNet/MobileNetV2 and fcos_resnet50_fpn"),
    Dialect("timm", timm.to_native, timm.from_native, "timm resnet*/resnext*/seresnet*, deep stem, mobilenetv2_100"),
    Dialect("mmdet", mmdet.to_native, mmdet.from_native,
            "mmdetection ResNet/ResNetV1c/V1d/MobileNetV2 (bare or backbone.), FPN + FCOSHead"),
    Dialect("mmpretrain", mmdet.mmpretrain_to_native, mmdet.mmpretrain_from_native,
            "mmpretrain (mmcls) ResNet/ResNetV1c/V1d/SEResNet/MobileNetV2 classifiers"),
    Dialect("detectron2", detectron2.to_native, detectron2.from_native,
            "detectron2 ResNet (res2..res5, stem.conv1), FPN, AdelaiDet FCOS head"),
    Dialect("maskrcnn", maskrcnn.to_native, maskrcnn.from_native,
            "maskrcnn-benchmark / FCOS (backbone.body, backbone.fpn, rpn.head)"),
    Dialect("caffe2", caffe2.to_native, caffe2.from_native, "Caffe2 / Detectron MSRA pickles (res2_0_branch2a_w)"),
)}
_ALIASES = {"native": "resbone", "tv": "torchvision", "mmdetection": "mmdet", "mmcls": "mmpretrain",
            "mmclassification": "mmpretrain", "d2": "detectron2", "fcos": "maskrcnn",
            "maskrcnn-benchmark": "maskrcnn", "maskrcnn_benchmark": "maskrcnn", "c2": "caffe2",
            "detectron": "caffe2"}


def resolve_dialect(name: Any) -> str:
    """The canonical dialect name for `name` (accepts aliases such as 'fcos', 'd2', 'mmcls')."""
    if not isinstance(name, str):
        raise TypeError(f"a dialect is a string such as 'detectron2', got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}; allowed dialects: {', '.join(DIALECTS)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return key


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], src: str = "auto", dst: str = "resbone",
                       **options: Any) -> StateDict:
    """Rename `state_dict` from dialect `src` ('auto': detect it) to dialect `dst`, through resbone's names.

    Options go to the dialect that takes them: eps (caffe2), prefix / conv_bias (mmdet), strides
    (mmpretrain), num_batches_tracked (maskrcnn). Tensors are shared, not copied, unless a value must
    change (caffe2 BN folding, mmdet's 0-d scales)."""
    from resbone.convert.detect import check_fits, detect_dialect
    from resbone.convert.io import unwrap_state_dict

    state_dict = unwrap_state_dict(state_dict)
    src = detect_dialect(state_dict) if src == "auto" else resolve_dialect(src)
    dst = resolve_dialect(dst)
    to_opts, from_opts = _split_options(src, dst, options)
    native = DIALECTS[src].to_native(state_dict, **to_opts)
    check_fits(native, src)
    return DIALECTS[dst].from_native(native, **from_opts)


_OPTIONS = {"caffe2": {"eps"}, "mmdet": {"prefix", "conv_bias"}, "mmpretrain": {"strides"},
            "maskrcnn": {"num_batches_tracked"}}
_TO_NATIVE_OPTIONS = {"caffe2": {"eps"}}


def _split_options(src: str, dst: str, options: Mapping[str, Any]) -> tuple[dict, dict]:
    to_opts = {k: v for k, v in options.items() if k in _TO_NATIVE_OPTIONS.get(src, ())}
    from_opts = {k: v for k, v in options.items() if k in _OPTIONS.get(dst, ())}
    unused = sorted(set(options) - set(to_opts) - set(from_opts))
    if unused:
        allowed = {f"{d}: {', '.join(sorted(o))}" for d, o in _OPTIONS.items()}
        raise TypeError(f"option(s) {unused} do not apply to {src} -> {dst}; options by dialect: "
                        f"{'; '.join(sorted(allowed))}")
    return to_opts, from_opts
