"""The model registry: a decorator and a dict, as timm's `_registry.py`.

`register_model` records a variant function under its name; `list_models('resnet5*')` lists names with
shell wildcards; `build_registered_model(name, **overrides)` builds one (`features_only=True` for timm's
feature extractor mode). The public `resbone.create_model` (timm's: `pretrained=`, `checkpoint=`) sits a layer up, in
resbone.factory (as timm's `_factory.py` sits above its models), and builds with this.
Reference tests: tests/models/test_registry.py.
"""
from __future__ import annotations

import contextlib
import fnmatch
from typing import Any, Callable, Sequence

import torch
from torch import nn

from resbone.utils.checks import did_you_mean

__all__ = ["build_registered_model", "is_model", "list_models", "model_entrypoint", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
FEATURE_CLASSES = (None, "list", "getter")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register `fn` under its own name; `fn(**kwargs)` must return the model."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def is_model(name: str) -> bool:
    return name in _MODELS


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style `pattern` ('*', 'resnet*', 'resne?t50*'), sorted."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string such as 'resnet*', got {pattern!r}")
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The function registered as `name`; a KeyError suggesting close names when there is none."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__} {name!r}")
    if name not in _MODELS:
        hint = did_you_mean(name, _MODELS)
        hint = f"; {hint}" if hint else ""
        raise KeyError(f"unknown model {name!r}{hint} ({len(_MODELS)} models are registered: "
                       f"`resbone list` or resbone.list_models() shows them)")
    return _MODELS[name]


def build_registered_model(name: str, *, features_only: bool = False,
                           out_indices: int | Sequence[int] | None = None, feature_cls: str | None = None,
                           device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                           **overrides: Any) -> nn.Module:
    """Build the registered model `name` with keyword `overrides` (on `device`, in `dtype`, as timm's).

    features_only=True (timm's): a backbone whose forward returns a list with the maps of `out_indices` in
    timm's numbering (ResNet: 0 = the stem at stride 2, 1..4 = layer1..layer4; None = all of them) and stops
    after the last one; feature_cls None, 'list' or 'getter' (timm's FeatureListNet / FeatureGetterNet, which
    give the same list). Without features_only, out_indices is the backbone's own (mmdetection's numbering)."""
    entrypoint = model_entrypoint(name)
    if "checkpoint" in overrides:
        raise TypeError("resbone.models.registry.build_registered_model builds only; resbone.create_model(name, "
                        "checkpoint=PATH) also loads weights")
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls={feature_cls!r} is not supported; allowed: {FEATURE_CLASSES} (each returns "
                         f"a list of maps)")
    if feature_cls is not None and not features_only:
        raise ValueError(f"feature_cls={feature_cls!r} needs features_only=True")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if not features_only:
            model = entrypoint(**overrides) if out_indices is None else entrypoint(out_indices=out_indices, **overrides)
        elif overrides.get("num_classes"):
            raise ValueError(f"features_only=True builds a backbone without a classifier; num_classes="
                             f"{overrides['num_classes']!r} contradicts it (leave it out)")
        else:
            model = entrypoint(**dict(overrides, num_classes=None)).as_feature_extractor(out_indices)
    return model if dtype is None else model.to(dtype=dtype)
