"""mmdetection's and mmpretrain's names <-> resbone's.

mmdet ResNet / ResNetV1c / ResNetV1d: native names already (`conv1`, `bn1`, `stem.0/1/3/4/6/7`,
`downsample.0/1/2`, DCN `conv2.conv_offset`), except that mmcv names a norm after its type
(build_norm_layer's abbreviation): GroupNorm is `gn1/gn2/gn3`, so a native norm without running
statistics (GN) becomes `gnK`. Checkpoints come bare (open-mmlab backbone weights) or with
`backbone.`; a detector adds `neck.` (FPN: `lateral_convs.i.conv`, `fpn_convs.i.conv`, extra convs
after them = P6, P7) and `bbox_head.` (FCOSHead: `cls_convs.k.conv/gn`, `reg_convs`, `conv_cls`,
`conv_reg`, `conv_centerness`, `scales.l.scale` as 0-d tensors where FCOS has shape [1]).
mmdet's FCOSHead uses conv_bias='auto' (no bias before GN): biases absent there are created as zeros,
and zero biases are dropped on export (non-zero ones are kept: set conv_bias=True in the mmdet config).

mmpretrain (mmcls) ResNet differs: the deep stem is three ConvModules (`stem.N.conv`, `stem.N.bn`);
ResLayer only adds the AvgPool when stride != 1, so an avg_down shortcut at a stride-1 stage is
`downsample.0/1` (conv, norm) where mmdet/timm/resbone have `downsample.1/2`; SE is
`se_layer.conv1.conv` / `se_layer.conv2.conv`; classifiers are `backbone.*` + `head.fc`.
MobileNetV2 (both): `conv1.conv/bn`, `layer{s}.{b}.conv.{j}.conv/bn`, `conv2.conv/bn`.
mmdet's plugins (mmcv ContextBlock, GeneralizedAttention, NonLocal2d) are named after their type in each block
(`layer2.0.context_block`, `gen_attention_block`, `nonlocal_block`), resbone's after their position
(`layer2.0.after_conv3.0`): reading needs the model's plugin list (`model=`); writing reads the type from the model
or, without one, from the plugin's own parameter names.

Anchors: mmdet `models/backbones/resnet.py`, `models/layers/res_layer.py`, `necks/fpn.py`,
`dense_heads/fcos_head.py`; mmpretrain `models/backbones/{resnet,seresnet,mobilenet_v2}.py`.
Reference tests: tests/convert/test_dialects.py (round trips, key names, GN, DCN, detector).
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from torch import nn

from resbone.convert.common import (
    MBV2_BLOCK,
    MBV2_FEATURE,
    ModelRequired,
    StateDict,
    add_prefix,
    count_levels,
    native_fpn_levels,
    rename,
    split_native,
    strip_prefix,
)
from resbone.layers.attention import ContextBlock, GeneralizedAttention, NonLocal2d
from resbone.models.resnet import PLUGIN_POSITIONS

__all__ = ["from_native", "mmpretrain_from_native", "mmpretrain_to_native", "to_native"]

_NORM = re.compile(r"^((?:layer\d+\.\d+\.)?)(bn|gn)([123])\.")


# ---- norms named after their type ------------------------------------------------------------------
def _gn_to_native(key: str) -> str:
    return _NORM.sub(lambda m: f"{m.group(1)}bn{m.group(3)}.", key) if _NORM.match(key) else key


def _native_norm_names(body: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """native norm module prefix -> mmcv's name for it ('layer1.0.bn1.' -> 'layer1.0.gn1.' for GN)."""
    out = {}
    for key in body:
        m = _NORM.match(key)
        if m and m.group(2) == "bn":
            module = m.group(0)
            if module + "weight" in body and module + "running_mean" not in body:
                out[module] = f"{m.group(1)}gn{m.group(3)}."
    return out


def _body_from_native(body: Mapping[str, torch.Tensor]) -> StateDict:
    norms = _native_norm_names(body)

    def key(k: str) -> str:
        m = _NORM.match(k)
        return norms[m.group(0)] + k[m.end():] if m and m.group(0) in norms else k

    return rename(body, key, dialect="mmdet")


# ---- plugins: mmcv names them by type, resbone by position ---------------------------------------------------
_ABBREVIATION = {ContextBlock: "context_block", GeneralizedAttention: "gen_attention_block",
                 NonLocal2d: "nonlocal_block"}  # mmcv's `_abbr_` of each plugin class
_MM_PLUGIN = re.compile(r"^(layer\d+\.\d+)\.((?:context_block|gen_attention_block|nonlocal_block)\w*)\.(.+)$")
_NATIVE_PLUGIN = re.compile(r"^(layer\d+\.\d+)\.(after_conv[123]\.\d+)\.(.+)$")
# Without a model, a native plugin's type shows in its parameter names (mmcv's, kept by resbone.layers.attention).
_TYPE_BY_PARAMETER = (("conv_mask.", "context_block"), ("channel_add_conv.", "context_block"),
                      ("channel_mul_conv.", "context_block"), ("theta.", "nonlocal_block"), ("g.", "nonlocal_block"),
                      ("query_conv.", "gen_attention_block"), ("key_conv.", "gen_attention_block"),
                      ("appr_bias", "gen_attention_block"), ("gamma", "gen_attention_block"))


def plugin_names(model: nn.Module) -> dict[str, str]:
    """`layerN.M.after_convK.I` -> `layerN.M.<mmcv name>` for every plugin of `model`, in mmdet's order (the
    block's after_conv1, after_conv2, after_conv3 plugin lists). Two plugins of one type in a block need mmdet's
    `postfix`, which resbone does not record: an error."""
    names: dict[str, str] = {}
    for path, block in model.named_modules():
        chains = [(p, getattr(block, p, None)) for p in PLUGIN_POSITIONS]
        where = re.search(r"layer\d+\.\d+$", path)
        if where is None or not any(isinstance(chain, nn.Sequential) for _, chain in chains):
            continue
        taken: dict[str, str] = {}
        for position, chain in chains:
            for index, plugin in enumerate(chain or ()):
                abbreviation = _ABBREVIATION.get(type(plugin))
                if abbreviation is None:
                    raise ValueError(f"mmdet has no name for plugin {type(plugin).__name__} at {path}.{position}")
                if abbreviation in taken:
                    raise ValueError(f"block {path} has two {type(plugin).__name__} plugins ({taken[abbreviation]}, "
                                     f"{position}.{index}); mmdet tells them apart by a postfix resbone does not keep")
                taken[abbreviation] = f"{position}.{index}"
                names[f"{where.group(0)}.{position}.{index}"] = f"{where.group(0)}.{abbreviation}"
    return names


def _plugins_to_native(body: Mapping[str, torch.Tensor], model: nn.Module | None) -> StateDict:
    found = sorted({f"{m.group(1)}.{m.group(2)}" for k in body if (m := _MM_PLUGIN.match(k))})
    if not found:
        return dict(body)
    if model is None:
        raise ModelRequired(f"mmdet names plugins by type ({found[0]!r}, {len(found)} in all) and resbone by position: "
                            "reading them needs the model (load_checkpoint(model, ...) passes it; convert_state_dict("
                            "..., model=model); resbone convert --arch NAME --set plugins=[...])")
    native = {mm: position for position, mm in plugin_names(model).items()}

    def key(k: str) -> str:
        m = _MM_PLUGIN.match(k)
        module = f"{m.group(1)}.{m.group(2)}" if m else None
        return f"{native[module]}.{m.group(3)}" if module in native else k

    return rename(body, key, dialect="mmdet")


def _plugins_from_native(body: Mapping[str, torch.Tensor], model: nn.Module | None) -> StateDict:
    if not any(_NATIVE_PLUGIN.match(k) for k in body):
        return dict(body)
    names = plugin_names(model) if model is not None else {}

    def key(k: str) -> str:
        m = _NATIVE_PLUGIN.match(k)
        if m is None:
            return k
        module = f"{m.group(1)}.{m.group(2)}"
        if module not in names:
            kind = next((name for prefix, name in _TYPE_BY_PARAMETER if m.group(3).startswith(prefix)), None)
            if kind is None:
                raise ValueError(f"mmdet: cannot tell the plugin type of {k!r}; pass model= to name it")
            names[module] = f"{m.group(1)}.{kind}"
        return f"{names[module]}.{m.group(3)}"

    return rename(body, key, dialect="mmdet")


# ---- MobileNetV2 ---------------------------------------------------------------------------------------
def _mbv2_from_native(key: str, norm: str) -> str:
    m = re.match(r"features\.(\d+)\.(.+)$", key)
    if m is None:
        return key
    index, rest = int(m.group(1)), m.group(2)
    if index in (0, 18):
        sub = re.match(r"([01])\.(.+)$", rest)
        module = "conv1" if index == 0 else "conv2"
        return f"{module}.{('conv', norm)[int(sub.group(1))]}.{sub.group(2)}" if sub else key
    stage, block = MBV2_BLOCK.get(index, (None, None))
    if stage is None:
        return key
    if stage == 0:  # expand ratio 1: depthwise ConvNormAct, then pointwise-linear conv, norm
        table = {"conv.0.0.": "conv.0.conv.", "conv.0.1.": f"conv.0.{norm}.", "conv.1.": "conv.1.conv.",
                 "conv.2.": f"conv.1.{norm}."}
    else:
        table = {"conv.0.0.": "conv.0.conv.", "conv.0.1.": f"conv.0.{norm}.", "conv.1.0.": "conv.1.conv.",
                 "conv.1.1.": f"conv.1.{norm}.", "conv.2.": "conv.2.conv.", "conv.3.": f"conv.2.{norm}."}
    for tv, mm in table.items():
        if rest.startswith(tv):
            return f"layer{stage + 1}.{block}.{mm}{rest[len(tv):]}"
    return key


def _mbv2_to_native(key: str) -> str:
    m = re.match(r"conv([12])\.(conv|bn|gn)\.(.+)$", key)
    if m:
        return f"features.{0 if m.group(1) == '1' else 18}.{0 if m.group(2) == 'conv' else 1}.{m.group(3)}"
    m = re.match(r"layer(\d)\.(\d+)\.conv\.(\d)\.(conv|bn|gn)\.(.+)$", key)
    if m is None or (int(m.group(1)) - 1, int(m.group(2))) not in MBV2_FEATURE:
        return key
    stage, block, j, part, rest = int(m.group(1)) - 1, int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)
    is_conv = part == "conv"
    if stage == 0:
        inner = ("conv.0.0", "conv.0.1") if j == 0 else ("conv.1", "conv.2")
    else:
        inner = {0: ("conv.0.0", "conv.0.1"), 1: ("conv.1.0", "conv.1.1"), 2: ("conv.2", "conv.3")}[j]
    return f"features.{MBV2_FEATURE[stage, block]}.{inner[0] if is_conv else inner[1]}.{rest}"


def _is_mm_mbv2(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(re.match(r"(backbone\.)?layer1\.0\.conv\.0\.conv\.weight$", k) for k in state_dict)


# ---- the detector: FPN neck and FCOS head ----------------------------------------------------------------
def _detector_from_native(rest: Mapping[str, torch.Tensor], *, conv_bias: str | bool) -> StateDict:
    levels = native_fpn_levels(rest)
    biases = [k for k in rest if re.match(r"head\.(cls|bbox)_tower\.\d+\.bias$", k) and rest[k].dim() == 1
              and rest[k[: -len("bias")] + "weight"].dim() == 4]
    all_zero = all(bool(torch.all(rest[k] == 0)) for k in biases)
    if conv_bias is False and not all_zero:
        raise ValueError(f"mmdet conv_bias=False cannot hold the non-zero tower conv biases (e.g. {biases[0]!r}, "
                         "before GroupNorm); use conv_bias='auto' or True and set conv_bias=True in the mmdet "
                         "FCOSHead config")
    drop_biases = set(biases) if conv_bias is False or (conv_bias == "auto" and all_zero) else set()

    def key(k: str) -> str | None:
        if k in drop_biases:
            return None
        k2 = re.sub(r"^fpn\.inner_blocks\.(\d+)\.", r"neck.lateral_convs.\1.conv.", k)
        k2 = re.sub(r"^fpn\.layer_blocks\.(\d+)\.", r"neck.fpn_convs.\1.conv.", k2)
        k2 = re.sub(r"^fpn\.p6\.", f"neck.fpn_convs.{levels}.conv.", k2)
        k2 = re.sub(r"^fpn\.p7\.", f"neck.fpn_convs.{levels + 1}.conv.", k2)
        m = re.match(r"head\.(cls|bbox)_tower\.(\d+)\.(.+)$", k2)
        if m:
            tower = "cls_convs" if m.group(1) == "cls" else "reg_convs"
            index = int(m.group(2))
            return f"bbox_head.{tower}.{index // 3}.{('conv', 'gn', 'act')[index % 3]}.{m.group(3)}"
        k2 = re.sub(r"^head\.cls_logits\.", "bbox_head.conv_cls.", k2)
        k2 = re.sub(r"^head\.bbox_pred\.", "bbox_head.conv_reg.", k2)
        k2 = re.sub(r"^head\.centerness\.", "bbox_head.conv_centerness.", k2)
        return re.sub(r"^head\.scales\.", "bbox_head.scales.", k2)

    out = rename(rest, key, dialect="mmdet")
    for k, v in out.items():
        if re.match(r"bbox_head\.scales\.\d+\.scale$", k):
            out[k] = v.reshape(())  # mmcv's Scale holds a 0-d parameter
    return out


def _detector_to_native(rest: Mapping[str, torch.Tensor]) -> StateDict:
    levels = count_levels(rest, r"neck\.lateral_convs\.(\d+)\.")

    def key(k: str) -> str:
        m = re.match(r"neck\.fpn_convs\.(\d+)\.conv\.(.+)$", k)
        if m:
            i = int(m.group(1))
            name = f"layer_blocks.{i}" if i < levels else ("p6", "p7", f"p{i - levels + 6}")[min(i - levels, 2)]
            return f"fpn.{name}.{m.group(2)}"
        k = re.sub(r"^neck\.lateral_convs\.(\d+)\.conv\.", r"fpn.inner_blocks.\1.", k)
        m = re.match(r"bbox_head\.(cls|reg)_convs\.(\d+)\.(conv|gn)\.(.+)$", k)
        if m:
            tower = "cls_tower" if m.group(1) == "cls" else "bbox_tower"
            return f"head.{tower}.{3 * int(m.group(2)) + (m.group(3) == 'gn')}.{m.group(4)}"
        k = re.sub(r"^bbox_head\.conv_cls\.", "head.cls_logits.", k)
        k = re.sub(r"^bbox_head\.conv_reg\.", "head.bbox_pred.", k)
        k = re.sub(r"^bbox_head\.conv_centerness\.", "head.centerness.", k)
        return re.sub(r"^bbox_head\.scales\.", "head.scales.", k)

    out = rename(rest, key, dialect="mmdet")
    for k in list(out):
        if re.match(r"head\.scales\.\d+\.scale$", k):
            out[k] = out[k].reshape(1)
        m = re.match(r"(head\.(cls|bbox)_tower\.\d+\.)weight$", k)
        if m and out[k].dim() == 4 and m.group(1) + "bias" not in out:
            out[m.group(1) + "bias"] = out[k].new_zeros(out[k].shape[0])
    return out


def _is_mm_detector(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("neck.", "bbox_head.")) for k in state_dict)


# ---- mmdet ---------------------------------------------------------------------------------------------
def to_native(state_dict: Mapping[str, torch.Tensor], *, model: nn.Module | None = None) -> StateDict:
    """mmdet -> resbone (bare backbone, `backbone.`-prefixed backbone, or an FPN + FCOSHead detector).
    `model`: the resbone model the weights are for; needed when the checkpoint has plugins."""
    detector = _is_mm_detector(state_dict)
    if detector:
        body = strip_prefix(state_dict, "backbone.")
        rest = {k: v for k, v in state_dict.items() if not k.startswith("backbone.")}
    elif state_dict and all(k.startswith("backbone.") for k in state_dict):
        body, rest = strip_prefix(state_dict, "backbone."), {}
    else:
        body, rest = dict(state_dict), {}
    body = rename(body, _mbv2_to_native if _is_mm_mbv2(body) else _gn_to_native, dialect="mmdet")
    body = _plugins_to_native(body, model)
    if not detector:
        return body
    return {**add_prefix(body, "backbone."), **_detector_to_native(rest)}


def from_native(state_dict: Mapping[str, torch.Tensor], *, prefix: str = "",
                conv_bias: str | bool = "auto", model: nn.Module | None = None) -> StateDict:
    """resbone -> mmdet. A backbone gets `prefix` ('' as open-mmlab's backbone weights, or 'backbone.');
    a native detector always becomes `backbone.` + `neck.` + `bbox_head.`. `conv_bias`: what to do with the
    head towers' conv biases ('auto': drop when all zero, as mmdet's default FCOSHead has none). `model`: names the
    plugins (without it, their type is read from their parameter names)."""
    if conv_bias not in ("auto", True, False):
        raise ValueError(f"conv_bias must be 'auto', True or False, got {conv_bias!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string such as 'backbone.', got {prefix!r}")
    if prefix and not prefix.endswith("."):
        prefix += "."  # mmengine's reading of init_cfg prefix='backbone': never 'backboneconv1.weight'
    body, rest, detector = split_native(state_dict)
    norm = "gn" if "features.0.1.weight" in body and "features.0.1.running_mean" not in body else "bn"
    if "features.0.0.weight" in body:
        body = rename(body, lambda k: _mbv2_from_native(k, norm), dialect="mmdet")
    else:
        body = _plugins_from_native(_body_from_native(body), model)
    if not detector:
        return add_prefix(body, prefix)
    return {**add_prefix(body, "backbone."), **_detector_from_native(rest, conv_bias=conv_bias)}


# ---- mmpretrain ----------------------------------------------------------------------------------------
_MMPRETRAIN_STEM = {"stem.0.": "stem.0.conv.", "stem.1.": "stem.0.{n}.", "stem.3.": "stem.1.conv.",
                    "stem.4.": "stem.1.{n}.", "stem.6.": "stem.2.conv.", "stem.7.": "stem.2.{n}."}


def mmpretrain_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmpretrain classifier / backbone -> resbone."""
    if any(k.startswith("backbone.") for k in state_dict):
        sd = {**strip_prefix(state_dict, "backbone."),
              **{k: v for k, v in state_dict.items() if not k.startswith("backbone.")}}
    else:
        sd = dict(state_dict)
    if _is_mm_mbv2(sd):
        return rename(sd, lambda k: "classifier.1." + k[8:] if k.startswith("head.fc.") else _mbv2_to_native(k),
                      dialect="mmpretrain")
    avg_down = any(".downsample.2." in k for k in sd)

    def key(k: str) -> str:
        if k.startswith("head.fc."):
            return "fc." + k[len("head.fc."):]
        m = re.match(r"stem\.([012])\.(conv|bn|gn)\.(.+)$", k)
        if m:
            return f"stem.{3 * int(m.group(1)) + (m.group(2) != 'conv')}.{m.group(3)}"
        k = re.sub(r"\.se_layer\.conv([12])\.conv\.", r".se.fc\1.", k)
        m = re.match(r"(layer\d+\.\d+\.downsample\.)([01])\.(.+)$", k)
        if m and avg_down and m.group(1) + "2.weight" not in sd:
            return f"{m.group(1)}{int(m.group(2)) + 1}.{m.group(3)}"  # stride-1 stage: no AvgPool here
        return _gn_to_native(k)

    return rename(sd, key, dialect="mmpretrain")


def mmpretrain_from_native(state_dict: Mapping[str, torch.Tensor], *,
                           strides: Sequence[int] = (1, 2, 2, 2)) -> StateDict:
    """resbone -> mmpretrain (`backbone.` + `head.fc`). `strides`: the stage strides, which decide where
    mmpretrain's avg_down shortcut has no AvgPool (stride-1 stages; mmpretrain's default (1, 2, 2, 2))."""
    body, _, detector = split_native(state_dict)
    if detector:
        raise ValueError("mmpretrain has no detector; pick dialect 'mmdet' for a native detector")
    if "features.0.0.weight" in body:
        norm = "bn" if "features.0.1.running_mean" in body else "gn"
        out = rename(body, lambda k: "head.fc." + k[13:] if k.startswith("classifier.1.")
                     else "backbone." + _mbv2_from_native(k, norm), dialect="mmpretrain")
        return out
    body = _body_from_native(body)
    avg_down = any(".downsample.2." in k for k in body)

    def key(k: str) -> str:
        if k.startswith("fc."):
            return "head." + k
        for native, mm in _MMPRETRAIN_STEM.items():
            if k.startswith(native):
                norm = "bn" if native + "running_mean" in body else "gn"
                return "backbone." + mm.format(n=norm) + k[len(native):]
        k = re.sub(r"\.se\.fc([12])\.", r".se_layer.conv\1.conv.", k)
        m = re.match(r"layer(\d+)\.(\d+)\.downsample\.([12])\.(.+)$", k)
        if m and avg_down and m.group(2) == "0":
            stage = int(m.group(1)) - 1
            if stage >= len(strides):
                raise ValueError(f"mmpretrain: strides={tuple(strides)} has no stage {stage + 1} (key {k!r})")
            if strides[stage] == 1:
                return f"backbone.layer{m.group(1)}.0.downsample.{int(m.group(3)) - 1}.{m.group(4)}"
        return "backbone." + k

    return rename(body, key, dialect="mmpretrain")
