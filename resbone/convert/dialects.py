"""The dialect table: each ecosystem's pair of renaming functions (to resbone, from resbone), the options each
side takes, and what a checkpoint says about its model beyond its keys. `convert_state_dict` (translate.py)
and `load_checkpoint` (load.py) only look dialects up here.

Reference tests: tests/convert/test_dialects.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from resbone.convert import caffe2, detectron2, maskrcnn, mmdet, reid, timm, torchvision
from resbone.convert.common import StateDict

__all__ = ["DIALECTS", "Dialect", "resolve_dialect"]


def _identity(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return dict(state_dict)


def _no_hints(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Dialect:
    """One ecosystem's names. `read_options` / `write_options`: the keyword options its to_native / from_native
    take (e.g. caffe2's eps, mmdet's model); `hints(state_dict)`: model arguments the checkpoint implies but its
    keys cannot hold (fast-reid's ceil-mode stem pool); `pickle_key`: the key a `.pkl` file of this dialect
    keeps its arrays under ('model' as detectron2 reads it, 'blobs' as Detectron reads Caffe2 weights)."""

    name: str
    to_native: Callable[..., StateDict]
    from_native: Callable[..., StateDict]
    about: str
    read_options: frozenset[str] = frozenset()
    write_options: frozenset[str] = frozenset()
    hints: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_hints
    pickle_key: str = "model"

    def read(self, state_dict: Mapping[str, torch.Tensor], **options: Any) -> StateDict:
        """to_native with the options this dialect takes (the others are for the writing side or another dialect)."""
        return self.to_native(state_dict, **{k: v for k, v in options.items() if k in self.read_options})

    def write(self, native: Mapping[str, torch.Tensor], **options: Any) -> StateDict:
        return self.from_native(native, **{k: v for k, v in options.items() if k in self.write_options})


_CAFFE2 = frozenset({"eps"})
# Order matters: when several dialects read a state dict the same way, the first one is reported.
DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect("resbone", _identity, _identity, "resbone's own names (= torchvision's for backbones)"),
    Dialect("torchvision", torchvision.to_native, torchvision.from_native,
            "torchvision ResNet/ResNeXt/Wide-ResNet/MobileNetV2 and fcos_resnet50_fpn"),
    Dialect("timm", timm.to_native, timm.from_native, "timm resnet*/resnext*/seresnet*, deep stem, mobilenetv2_100"),
    Dialect("mmdet", mmdet.to_native, mmdet.from_native,
            "mmdetection ResNet/ResNetV1c/V1d/MobileNetV2 (bare or backbone.), GN, plugins, FPN + FCOSHead",
            read_options=frozenset({"model"}), write_options=frozenset({"prefix", "conv_bias", "model"})),
    Dialect("mmpretrain", mmdet.mmpretrain_to_native, mmdet.mmpretrain_from_native,
            "mmpretrain (mmcls) ResNet/ResNetV1c/V1d/SEResNet/MobileNetV2 classifiers",
            write_options=frozenset({"strides"})),
    Dialect("detectron2", detectron2.to_native, detectron2.from_native,
            "detectron2 ResNet (res2..res5, stem.conv1), FPN, AdelaiDet FCOS head"),
    Dialect("maskrcnn", maskrcnn.to_native, maskrcnn.from_native,
            "maskrcnn-benchmark / FCOS (backbone.body, backbone.fpn, rpn.head)",
            write_options=frozenset({"num_batches_tracked"})),
    Dialect("caffe2", caffe2.to_native, caffe2.from_native, "Caffe2 / Detectron MSRA pickles (res2_0_branch2a_w)",
            read_options=_CAFFE2, write_options=_CAFFE2, pickle_key="blobs"),
    Dialect("pretrainedmodels", reid.senet_to_native, reid.senet_from_native,
            "Cadene's pretrainedmodels SENet (layer0., se_module., last_linear), timm legacy_seresnet*"),
    Dialect("torchreid", reid.torchreid_to_native, reid.torchreid_from_native,
            "torchreid resnet*/se_resnet*/resnet50_ibn_a (classifier., fc512 embeddings)"),
    Dialect("fastreid", reid.fastreid_to_native, reid.fastreid_from_native,
            "fast-reid ResNet (IBN, Linear SE `se.fc.0/2`; whole model: backbone. + heads.) and IBN-Net's own files",
            hints=reid.fastreid_hints),
)}
_ALIASES = {"native": "resbone", "tv": "torchvision", "mmdetection": "mmdet", "mmcls": "mmpretrain",
            "mmclassification": "mmpretrain", "d2": "detectron2", "fcos": "maskrcnn",
            "maskrcnn-benchmark": "maskrcnn", "maskrcnn_benchmark": "maskrcnn", "c2": "caffe2",
            "detectron": "caffe2", "fast-reid": "fastreid", "fast_reid": "fastreid", "ibn-net": "fastreid",
            "ibnnet": "fastreid", "cadene": "pretrainedmodels", "senet": "pretrainedmodels",
            "deep-person-reid": "torchreid"}


def resolve_dialect(name: Any) -> str:
    """The canonical dialect name for `name` (accepts aliases such as 'fcos', 'd2', 'mmcls', 'fast-reid')."""
    if not isinstance(name, str):
        raise TypeError(f"a dialect is a string such as 'detectron2', got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}; allowed dialects: {', '.join(DIALECTS)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return key


def check_options(options: Mapping[str, Any], *dialects: str) -> None:
    """Refuse options that none of `dialects` takes (a silently ignored option is a wrong result)."""
    taken = set().union(*(DIALECTS[d].read_options | DIALECTS[d].write_options for d in dialects))
    unused = sorted(set(options) - taken - {"model"})
    if unused:
        allowed = sorted(f"{d.name}: {', '.join(sorted(d.read_options | d.write_options))}"
                         for d in DIALECTS.values() if d.read_options | d.write_options)
        raise TypeError(f"option(s) {unused} do not apply to {' -> '.join(dialects)}; options by dialect: "
                        f"{'; '.join(allowed)}")
