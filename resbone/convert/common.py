"""What every dialect shares: renaming keys without collisions, and the native key grammar.

Native names are torchvision's (`conv1`, `layer1.0.downsample.0`, `fc`, the deep stem `stem.N`); a native
detector prefixes the backbone with `backbone.` and adds `fpn.*` and `head.*`; a re-identification head
that resbone does not build (torchreid's embedding, fast-reid's BNNeck and classifier) is kept under
`reid_head.` so that it can be written back and, when loading, dropped with a report.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

import torch

from resbone.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING

StateDict = dict[str, torch.Tensor]

_STAT = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_NATIVE_BODY = (
    rf"(conv1|bn1(\.(IN|BN))?|stem\.\d+|fc)\.{_STAT}",
    rf"layer\d+\.\d+\.(conv[123](\.conv_offset)?|bn[123](\.(IN|BN))?|downsample\.\d)\.{_STAT}",
    r"layer\d+\.\d+\.se\.fc[12]\.(weight|bias)",
    r"layer\d+\.\d+\.after_conv[123]\.\d+\.[\w.]+",
    rf"features\.\d+\.(\d+\.|conv\.\d+\.(\d+\.)?){_STAT}",
    r"classifier\.1\.(weight|bias)",
    r"reid_head\.[\w.]+",
)
_NATIVE_DETECTOR = (
    r"fpn\.(inner_blocks|layer_blocks)\.\d+\.(weight|bias)",
    r"fpn\.p[67]\.(weight|bias)",
    r"head\.(cls_tower|bbox_tower)\.\d+\.(weight|bias)",
    r"head\.(cls_tower|bbox_tower)\.\d+\.conv_offset\.(weight|bias)",
    r"head\.(cls_logits|bbox_pred|centerness)\.(weight|bias)",
    r"head\.scales\.\d+\.scale",
)
NATIVE_KEY = re.compile("|".join(
    [f"(?:{p})$" for p in _NATIVE_BODY]
    + [f"(?:backbone\\.(?:{p}))$" for p in _NATIVE_BODY]
    + [f"(?:{p})$" for p in _NATIVE_DETECTOR]))

# Keys torchvision's own ResNet / MobileNetV2 / detection backbones produce (a subset of the above).
TORCHVISION_BODY_KEY = re.compile(
    rf"(conv1|bn1|fc|layer\d+\.\d+\.(conv[123]|bn[123]|downsample\.[01]))\.{_STAT}$"
    rf"|features\.\d+\.(\d+\.|conv\.\d+\.(\d+\.)?){_STAT}$|classifier\.1\.(weight|bias)$")

# MobileNetV2 stage depths (the `n` column of the paper's Table 2); every other ecosystem numbers the same
# 17 blocks as (stage, block).
MBV2_DEPTHS = tuple(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING)
MBV2_FEATURE = {(stage, block): 1 + sum(MBV2_DEPTHS[:stage]) + block
                for stage, depth in enumerate(MBV2_DEPTHS) for block in range(depth)}
MBV2_BLOCK = {index: stage_block for stage_block, index in MBV2_FEATURE.items()}


def is_native_key(key: str) -> bool:
    return NATIVE_KEY.match(key) is not None


def rename(state_dict: Mapping[str, torch.Tensor], fn: Callable[[str], str | None], *,
           dialect: str) -> StateDict:
    """Apply `fn` to every key (None drops the key); two keys landing on one name is an error."""
    out: StateDict = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = fn(key)
        if new is None:
            continue
        if new in out:
            raise ValueError(f"{dialect}: keys {origin[new]!r} and {key!r} both map to {new!r}; "
                             "the state dict mixes two naming schemes")
        out[new] = value
        origin[new] = key
    return out


def sub_all(key: str, rules: Iterable[tuple[re.Pattern, str]]) -> str:
    for pattern, replacement in rules:
        key = pattern.sub(replacement, key)
    return key


def rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(pattern), replacement) for pattern, replacement in pairs]


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """Keys under `prefix`, without it; other keys are left out."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def add_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {prefix + k: v for k, v in state_dict.items()}


def split_native(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict, bool]:
    """(backbone keys without `backbone.`, detector keys (fpn.*, head.*, anything else), is_detector).

    A native detector is recognised by its `fpn.` / `head.` keys or a `backbone.` prefix; a bare
    backbone or classifier comes back whole as the first dict."""
    is_detector = any(k.startswith(("backbone.", "fpn.", "head.")) for k in state_dict)
    if not is_detector:
        return dict(state_dict), {}, False
    body = strip_prefix(state_dict, "backbone.")
    rest = {k: v for k, v in state_dict.items() if not k.startswith("backbone.")}
    return body, rest, True


def native_fpn_levels(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many backbone levels the native FPN reads (3 for C3-C5, 4 for C2-C5)."""
    found = {int(m.group(1)) for k in state_dict
             if (m := re.match(r"fpn\.inner_blocks\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def count_levels(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state_dict if (m := re.match(pattern, k))})


def check_scalar_one(value: torch.Tensor, key: str, dialect: str) -> None:
    if not torch.all(value == 1):
        raise ValueError(f"{dialect} has no per-level Scale, but {key} = {value.flatten().tolist()} (not 1.0); "
                         "exporting would change the model's box regression")


class ModelRequired(ValueError):
    """A dialect that names modules by what they are, not where they sit (mmdet's plugins), needs the model
    to read its keys; raised only once every other key is explained, so detection can count them."""


def nonfinite_keys(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of floating-point tensors holding NaN or Inf, in the state dict's order."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(state_dict: Mapping[str, torch.Tensor], *, source: str = "the checkpoint",
                 allow_nonfinite: bool = False) -> None:
    """Refuse NaN / Inf weights (a diverged run, a corrupt file), naming the first bad tensors; a model that
    loads them computes NaN for every input. allow_nonfinite=True lets them through."""
    if allow_nonfinite:
        return
    bad = nonfinite_keys(state_dict)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{source} holds NaN or Inf values in {len(bad)} tensor(s): {shown}; a model with these "
                         "weights computes NaN. Pass allow_nonfinite=True (CLI: --allow-nonfinite) to load them anyway")
