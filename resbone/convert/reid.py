"""The re-identification and SENet ecosystems' names <-> resbone's: Cadene's pretrainedmodels, torchreid, fast-reid.

- **pretrainedmodels** (Cadene's `senet.py`, also reid-strong-baseline and timm's `legacy_seresnet*`): the stem is
  `layer0.conv1` / `layer0.bn1` (senet154's 3x3 stem: `layer0.conv1..3` / `bn1..3` = native `stem.0/1, 3/4, 6/7`),
  SE is `se_module.fc1/fc2` (1x1 convs with bias = native `se.fc1/fc2`), the classifier `last_linear` (= `fc`).
  The stem pool (3x3, stride 2, ceil mode, no padding) has no parameters: resbone's `se_resnet*` build it.
- **torchreid** (KaiyangZhou/deep-person-reid): ResNets keep torchvision's names, SENets Cadene's, and both call
  the classifier `classifier` (= native `fc`: torchreid's training forward is pool + classifier, as resbone's
  classifier). Models with an embedding (`*_fc512`: `fc.0` Linear, `fc.1` BatchNorm1d) have no resbone
  equivalent: `fc.N` and `classifier` go to `reid_head.fc.N` / `reid_head.classifier`.
- **fast-reid** (and IBN-Net's own checkpoints): the SE layer is `se.fc.0` / `se.fc.2` (nn.Linear without bias =
  native `se.fc1/fc2`, form='linear'); a whole fast-reid model is `backbone.*` + `heads.*` (BNNeck
  `heads.bottleneck.0`, classifier `heads.weight`), the heads going to `reid_head.*`. fast-reid's ResNet pools its
  stem with ceil_mode and no padding (`stem_pool='ceil'` here): a whole model tells the loader so (`hints`).

`reid_head.*` keys are dropped by load_checkpoint with a report (resbone builds no re-id head) and written back by
the dialect they came from. Anchors: pretrainedmodels `models/senet.py`, torchreid `reid/models/{resnet,senet}.py`,
fast-reid `modeling/backbones/resnet.py`, `layers/se_layer.py`, `modeling/heads/embedding_head.py`.
Reference tests: tests/convert/test_reid_dialects.py (each project's own model with random weights).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from resbone.convert.common import StateDict, rename, rules, strip_prefix, sub_all

__all__ = ["fastreid_from_native", "fastreid_hints", "fastreid_to_native", "senet_from_native", "senet_to_native",
           "torchreid_from_native", "torchreid_to_native"]

_DEEP_STEM = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4", "conv3": "6", "bn3": "7"}
_SENET_TO_NATIVE = rules((r"\.se_module\.", ".se."), (r"^last_linear\.", "fc."))
_SENET_FROM_NATIVE = rules((r"\.se\.(fc[12])\.", r".se_module.\1."), (r"^fc\.", "last_linear."))
_FASTREID_SE_TO_NATIVE = rules((r"\.se\.fc\.0\.", ".se.fc1."), (r"\.se\.fc\.2\.", ".se.fc2."))
_FASTREID_SE_FROM_NATIVE = rules((r"\.se\.fc1\.", ".se.fc.0."), (r"\.se\.fc2\.", ".se.fc.2."))


def _refuse(body: Mapping[str, torch.Tensor], dialect: str, *, deep_stem: bool, se_form: str | None) -> None:
    """What the target project's ResNet cannot build: a deep stem, an avg_down shortcut, SE of the other form."""
    checks = [(r"layer\d+\.\d+\.downsample\.2\.", "an avg_down shortcut (AvgPool + conv + norm)")]
    if not deep_stem:
        checks.append((r"stem\.\d+\.", "a deep stem (three 3x3 convs)"))
    for pattern, what in checks:
        found = sorted(k for k in body if re.match(pattern, k))
        if found:
            raise ValueError(f"{dialect} has no {what}, found {found[0]!r}; export this model to timm, mmdet or "
                             "torchvision names instead")
    linear = sorted(k for k, v in body.items() if re.search(r"\.se\.fc1\.weight$", k) and v.dim() == 2)
    conv = sorted(k for k, v in body.items() if re.search(r"\.se\.fc1\.weight$", k) and v.dim() == 4)
    wrong = linear if se_form == "conv" else conv if se_form == "linear" else []
    if wrong:
        other = "fastreid (Linear SE)" if se_form == "conv" else "pretrainedmodels or torchreid (1x1-conv SE)"
        raise ValueError(f"{dialect}'s SE layer is a {'1x1 conv' if se_form == 'conv' else 'Linear'}, but "
                         f"{wrong[0]!r} has shape {list(body[wrong[0]].shape)}; write {other} names instead")


# ---- Cadene's pretrainedmodels SENet -------------------------------------------------------------------------------
def _layer0_to_native(key: str, deep: bool) -> str:
    m = re.match(r"layer0\.((?:conv|bn)[123])\.(.+)$", key)
    if m is None:
        return key
    return f"stem.{_DEEP_STEM[m.group(1)]}.{m.group(2)}" if deep else f"{m.group(1)}.{m.group(2)}"


def _layer0_from_native(key: str) -> str:
    m = re.match(r"stem\.(\d)\.(.+)$", key)
    if m:
        module = {v: k for k, v in _DEEP_STEM.items()}.get(m.group(1))
        return f"layer0.{module}.{m.group(2)}" if module else key
    return re.sub(r"^(conv1|bn1)\.", r"layer0.\1.", key)


def senet_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """pretrainedmodels (Cadene) SENet -> resbone."""
    deep = "layer0.conv2.weight" in state_dict
    return rename(state_dict, lambda k: sub_all(_layer0_to_native(k, deep), _SENET_TO_NATIVE),
                  dialect="pretrainedmodels")


def senet_from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> pretrainedmodels (Cadene) SENet names (`layer0.*`, `se_module.*`, `last_linear`)."""
    _refuse(state_dict, "pretrainedmodels", deep_stem=True, se_form="conv")
    return rename(state_dict, lambda k: sub_all(_layer0_from_native(k), _SENET_FROM_NATIVE),
                  dialect="pretrainedmodels")


# ---- torchreid -----------------------------------------------------------------------------------------------------
def torchreid_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """torchreid ResNet / SENet / IBN-a -> resbone; the classifier becomes `fc`, an embedding `reid_head.*`."""
    embedding = any(re.match(r"fc\.\d+\.", k) for k in state_dict)
    deep = "layer0.conv2.weight" in state_dict

    def key(k: str) -> str:
        if embedding and re.match(r"(fc\.\d+|classifier)\.", k):
            return "reid_head." + k
        k = re.sub(r"^classifier\.", "fc.", k)
        return sub_all(_layer0_to_native(k, deep), _SENET_TO_NATIVE[:1])

    return rename(state_dict, key, dialect="torchreid")


def torchreid_from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> torchreid: Cadene's layout for a 1x1-conv SE network (torchreid's se_resnet*), torchvision's
    otherwise; `fc` becomes `classifier`."""
    _refuse(state_dict, "torchreid", deep_stem=True, se_form="conv")
    senet = any(re.search(r"\.se\.fc1\.weight$", k) for k in state_dict)

    def key(k: str) -> str:
        if k.startswith("reid_head.") and re.match(r"reid_head\.(fc\.\d+|classifier)\.", k):
            return k[len("reid_head."):]
        if k.startswith("fc."):
            return "classifier." + k[len("fc."):]
        return sub_all(_layer0_from_native(k), _SENET_FROM_NATIVE[:1]) if senet else k

    return rename(state_dict, key, dialect="torchreid")


# ---- fast-reid / IBN-Net -------------------------------------------------------------------------------------------
def _fastreid_body(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """(backbone keys without `backbone.`, head keys as `reid_head.*`) of a whole model or a bare backbone."""
    whole = any(k.startswith("heads.") for k in state_dict)
    if whole or (state_dict and all(k.startswith("backbone.") for k in state_dict)):
        heads = {"reid_head." + k[len("heads."):]: v for k, v in state_dict.items() if k.startswith("heads.")}
        rest = {k: v for k, v in state_dict.items() if not k.startswith(("backbone.", "heads."))}
        return {**strip_prefix(state_dict, "backbone."), **rest}, heads
    return dict(state_dict), {}


def fastreid_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """fast-reid (whole model or backbone) / IBN-Net -> resbone."""
    body, heads = _fastreid_body(state_dict)
    return {**rename(body, lambda k: sub_all(k, _FASTREID_SE_TO_NATIVE), dialect="fastreid"), **heads}


def fastreid_from_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """resbone -> fast-reid: a backbone keeps bare names (IBN-Net's, what fast-reid's PRETRAIN_PATH reads); with a
    `reid_head.*` the whole model is written (`backbone.*` + `heads.*`)."""
    body = {k: v for k, v in state_dict.items() if not k.startswith("reid_head.")}
    _refuse(body, "fastreid", deep_stem=False, se_form="linear")
    body = rename(body, lambda k: sub_all(k, _FASTREID_SE_FROM_NATIVE), dialect="fastreid")
    heads = {"heads." + k[len("reid_head."):]: v for k, v in state_dict.items() if k.startswith("reid_head.")}
    if not heads:
        return body
    return {**{"backbone." + k: v for k, v in body.items()}, **heads}


def fastreid_hints(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """What a fast-reid checkpoint says about the model that its keys do not hold: a whole fast-reid model
    (`heads.*`) comes from a ResNet whose stem pool is ceil-mode without padding."""
    return {"stem_pool": "ceil"} if any(k.startswith("heads.") for k in state_dict) else {}
