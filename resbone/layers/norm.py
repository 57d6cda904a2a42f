"""Normalisation layers and `build_norm`, the one place a norm config becomes a module.

Anchors: mmcv's `build_norm_layer` (the dict form: type, requires_grad, eps, momentum, num_groups),
torchvision's `norm_layer` callables, IBN-Net's `IBN` (half InstanceNorm, half BatchNorm, with its
official submodule names `IN` / `BN`). FrozenBatchNorm2d is torchvision.ops' own.
Reference tests: tests/layers/test_norm.py (IBN halves by hand, FrozenBN against BatchNorm in eval).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["FrozenBatchNorm2d", "IBN", "NORM_TYPES", "NormConfig", "build_norm", "is_batch_norm",
           "norm_type"]

NormConfig = Union[None, str, Mapping[str, Any], Callable[[int], nn.Module]]

NORM_TYPES = ("BN", "SyncBN", "GN", "FrozenBN", "IN", "IBN")
# The keys each type accepts besides `type` and `requires_grad`.
_NORM_KEYS = {
    "BN": {"eps", "momentum", "affine", "track_running_stats"},
    "SyncBN": {"eps", "momentum", "affine", "track_running_stats"},
    "GN": {"num_groups", "eps", "affine"},
    "FrozenBN": {"eps"},
    "IN": {"eps", "momentum", "affine", "track_running_stats"},
    "IBN": {"ratio", "eps", "momentum"},
}
# Aliases users bring from mmcv (BN2d), detectron2 ("FrozenBN", "SyncBN") and FCOS ("FrozenBatchNorm2d").
_ALIASES = {"BN2d": "BN", "BatchNorm2d": "BN", "FrozenBatchNorm2d": "FrozenBN", "GroupNorm": "GN",
            "SyncBatchNorm": "SyncBN", "IN2d": "IN", "InstanceNorm2d": "IN"}


class IBN(nn.Module):
    """Instance-Batch Normalisation (IBN-Net, Pan et al. 2018): the first `ratio` of the channels go
    through InstanceNorm (affine), the rest through BatchNorm."""

    def __init__(self, planes: int, ratio: float = 0.5, *, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"IBN ratio must be strictly between 0 and 1, got {ratio!r}")
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True, eps=eps)
        self.BN = nn.BatchNorm2d(planes - self.half, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, (self.half, x.shape[1] - self.half), dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


def norm_type(cfg: NormConfig) -> str:
    """The canonical type name of a norm config ('BN', 'GN', ...), 'custom' for a callable."""
    if cfg is None:
        return "BN"
    if callable(cfg) and not isinstance(cfg, Mapping):
        return "custom"
    if isinstance(cfg, str):
        name = cfg
    elif isinstance(cfg, Mapping):
        if "type" not in cfg:
            raise KeyError(f"norm_cfg {dict(cfg)!r} has no 'type'; expected one of {NORM_TYPES}")
        name = cfg["type"]
    else:
        raise TypeError(f"norm_cfg must be None, a type name, a dict with 'type', or a callable "
                        f"taking num_features; got {type(cfg).__name__} {cfg!r}")
    name = _ALIASES.get(name, name)
    if name not in NORM_TYPES:
        raise ValueError(f"unknown norm type {name!r}; allowed: {', '.join(NORM_TYPES)}")
    return name


def check_norm_cfg(cfg: NormConfig) -> None:
    """Validate a norm config once, at a public boundary, so that building layers later cannot fail."""
    kind = norm_type(cfg)
    if not isinstance(cfg, Mapping):
        return
    unknown = set(cfg) - {"type", "requires_grad"} - _NORM_KEYS[kind]
    if unknown:
        raise KeyError(f"norm_cfg for {kind} got unknown keys {sorted(unknown)}; allowed: "
                       f"{sorted(_NORM_KEYS[kind] | {'type', 'requires_grad'})}")
    if kind == "GN" and (not isinstance(cfg.get("num_groups", 32), int) or cfg.get("num_groups", 32) < 1):
        raise ValueError(f"GN num_groups must be a positive int, got {cfg.get('num_groups')!r}")


def build_norm(cfg: NormConfig, num_features: int) -> nn.Module:
    """Make the norm layer that `cfg` describes for `num_features` channels."""
    kind = norm_type(cfg)
    if kind == "custom":
        return cfg(num_features)  # type: ignore[operator]
    options = {k: v for k, v in cfg.items() if k not in ("type", "requires_grad")} \
        if isinstance(cfg, Mapping) else {}
    if kind == "BN":
        layer: nn.Module = nn.BatchNorm2d(num_features, **options)
    elif kind == "SyncBN":
        layer = nn.SyncBatchNorm(num_features, **options)
    elif kind == "GN":
        groups = options.pop("num_groups", 32)
        if num_features % groups:
            raise ValueError(f"GN with num_groups={groups} cannot normalise {num_features} channels "
                             f"(not divisible); choose num_groups dividing {num_features}")
        layer = nn.GroupNorm(groups, num_features, **options)
    elif kind == "FrozenBN":
        layer = FrozenBatchNorm2d(num_features, **options)
    elif kind == "IN":
        options.setdefault("affine", True)
        layer = nn.InstanceNorm2d(num_features, **options)
    else:
        layer = IBN(num_features, **options)
    if isinstance(cfg, Mapping) and cfg.get("requires_grad", True) is False:
        for param in layer.parameters():
            param.requires_grad_(False)
    return layer


def is_batch_norm(module: nn.Module) -> bool:
    """True for the layers whose statistics `norm_eval` keeps fixed (BN, SyncBN; not GN/IN/FrozenBN)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)
