"""Caffe2 / Detectron (MSRA) pickle blob names <-> resbone's.

Blob names: `conv1_w`, `res_conv1_bn_{s,b}` (GN models: `conv1_gn_{s,b}`), `res{2..5}_{block}_branch2{a,b,c}_w`
and `..._bn_{s,b}`, shortcut `res{n}_0_branch1_w` / `_bn_{s,b}`, classifier `pred_{w,b}` (also `fc1000_*`).
Caffe2's "BN" is an AffineChannel: y = x * s + b, no statistics. It becomes a FrozenBatchNorm2d with
weight s, bias b, running_mean 0 and running_var 1 - eps, so that FrozenBN's (var + eps) is exactly 1
(detectron2 does the same `running_var -= eps` when it upgrades old FrozenBN checkpoints). Pass
eps=0 for FCOS / maskrcnn-benchmark's FrozenBN (no eps): running_var is then exactly 1. Exporting folds
a norm's statistics into the affine (s = w / sqrt(var + eps), b = bias - mean * s); a norm whose
statistics are already (0, 1 - eps) is copied unchanged, so round trips are bit-exact.
`_momentum` blobs (solver state) are dropped. MSRA weights expect BGR 0-255 input and STRIDE_IN_1X1.

Anchors: detectron2 `checkpoint/c2_model_loading.py`, FCOS `fcos_core/utils/c2_model_loading.py`.
Reference tests: tests/convert/test_reference_models.py (folded BN: same outputs as the BN model).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from resbone.convert.common import StateDict

__all__ = ["from_native", "to_native"]

_BRANCH_TO_NATIVE = {"2a": ("conv1", "bn1"), "2b": ("conv2", "bn2"), "2c": ("conv3", "bn3"),
                     "1": ("downsample.0", "downsample.1")}
_BRANCH_FROM_NATIVE = {**{conv: b for b, (conv, _) in _BRANCH_TO_NATIVE.items()},
                       **{norm: b for b, (_, norm) in _BRANCH_TO_NATIVE.items()}}
_PARAM_TO_NATIVE = {"w": "weight", "b": "bias", "s": "weight", "rm": "running_mean", "riv": "running_var"}


def _key_to_native(key: str) -> str | None:
    if key.endswith("_momentum"):
        return None
    m = re.match(r"(pred|fc1000)_([wb])$", key)
    if m:
        return f"fc.{_PARAM_TO_NATIVE[m.group(2)]}"
    m = re.match(r"conv1_([wb])$", key)
    if m:
        return f"conv1.{_PARAM_TO_NATIVE[m.group(1)]}"
    m = re.match(r"(?:res_conv1_bn|conv1_gn)_(s|b|rm|riv)$", key)
    if m:
        return f"bn1.{_PARAM_TO_NATIVE[m.group(1)]}"
    m = re.match(r"res(\d)_(\d+)_branch(2a|2b|2c|1)_(w|b|bn_s|bn_b|bn_rm|bn_riv|gn_s|gn_b)$", key)
    if m:
        conv, norm = _BRANCH_TO_NATIVE[m.group(3)]
        param = m.group(4)
        module = conv if param in ("w", "b") else norm
        return f"layer{int(m.group(1)) - 1}.{m.group(2)}.{module}.{_PARAM_TO_NATIVE[param.split('_')[-1]]}"
    return key


def to_native(state_dict: Mapping[str, torch.Tensor], *, eps: float = 1e-5) -> StateDict:
    """Caffe2 blobs -> resbone, affine "BN" -> FrozenBatchNorm2d (mean 0, var 1 - eps). `eps` is the eps
    of the FrozenBN that will hold the weights (torchvision's 1e-5 by default; 0 for FCOS's)."""
    out: StateDict = {}
    affine = []
    for key, value in state_dict.items():
        new = _key_to_native(key)
        if new is None:
            continue
        if new in out:
            raise ValueError(f"caffe2: two blobs map to {new!r} (the second is {key!r})")
        out[new] = torch.as_tensor(value)
        if key.endswith("bn_s"):
            affine.append(new[: -len("weight")])
    for module in affine:
        weight = out[module + "weight"]
        out.setdefault(module + "bias", torch.zeros_like(weight))
        out.setdefault(module + "running_mean", torch.zeros_like(weight))
        out.setdefault(module + "running_var", torch.full_like(weight, 1.0) - eps)
    return out


def _fold(state_dict: Mapping[str, torch.Tensor], module: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = state_dict[module + "weight"], state_dict[module + "bias"]
    mean, var = state_dict[module + "running_mean"], state_dict[module + "running_var"]
    if torch.all(mean == 0) and torch.equal(var, torch.full_like(weight, 1.0) - eps):
        return weight, bias  # already an affine: copy, so that round trips are bit-exact
    scale = weight.double() / torch.sqrt(var.double() + eps)
    return scale.to(weight.dtype), (bias.double() - mean.double() * scale).to(bias.dtype)


def from_native(state_dict: Mapping[str, torch.Tensor], *, eps: float = 1e-5) -> StateDict:
    """resbone backbone / classifier -> Caffe2 blob names; norms with running statistics are folded into
    `_bn_s` / `_bn_b` (`eps`: the eps those norms were built with), GroupNorms become `_gn_s` / `_gn_b`."""
    if any(k.startswith(("backbone.", "fpn.", "head.")) for k in state_dict):
        raise ValueError("caffe2 pickles hold ImageNet backbones only; export the backbone alone "
                         "(keys without 'backbone.') or pick a detector dialect: detectron2, maskrcnn, mmdet")
    if "stem.0.weight" in state_dict or any(".downsample.2." in k for k in state_dict):
        raise ValueError("caffe2 (MSRA) ResNets have no deep stem and no avg_down shortcut; "
                         "export this model to timm, mmdet or torchvision names instead")
    out: StateDict = {}
    for key, value in state_dict.items():
        m = re.match(r"(.*?)(weight|bias|running_mean|running_var|num_batches_tracked)$", key)
        module, param = (m.group(1), m.group(2)) if m else (key, "")
        name = _module_name(module)
        if name is None:
            out[key] = value  # nothing Caffe2 names: kept as is
            continue
        base, kind = name
        if kind == "conv":
            out[f"{base}_{'w' if param == 'weight' else 'b'}"] = value
        elif module + "running_mean" not in state_dict:  # GroupNorm: an affine on normalised groups
            if param in ("weight", "bias"):
                out[f"{base}_gn_{'s' if param == 'weight' else 'b'}"] = value
        elif param == "weight":
            scale, shift = _fold(state_dict, module, eps)
            norm = "res_conv1_bn" if base == "conv1" else f"{base}_bn"
            out[f"{norm}_s"], out[f"{norm}_b"] = scale, shift
    return out


def _module_name(module: str) -> tuple[str, str] | None:
    """native module prefix -> (caffe2 blob base, 'conv' | 'norm')."""
    if module == "fc.":
        return "pred", "conv"
    if module in ("conv1.", "bn1."):
        return "conv1", "conv" if module == "conv1." else "norm"
    m = re.match(r"layer(\d)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.$", module)
    if m is None:
        return None
    part = m.group(3)
    kind = "conv" if part.startswith("conv") or part == "downsample.0" else "norm"
    return f"res{int(m.group(1)) + 1}_{m.group(2)}_branch{_BRANCH_FROM_NATIVE[part]}", kind
