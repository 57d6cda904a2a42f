"""The model registry: a decorator and a dict, as timm's `_registry.py`.

`register_model` records a variant function under its name; `list_models('resnet5*')` lists names with
shell wildcards; `create_model(name, **overrides)` builds one (`features_only=True` for timm's feature
extractor mode). Loading a checkpoint sits a layer up, in resbone.factory (as timm's `_factory.py` sits above
its models): `resbone.create_model(name, checkpoint=PATH)`. Reference tests: tests/models/test_registry.py.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Sequence

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "model_entrypoint", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


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
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} ({len(_MODELS)} models are registered: "
                       f"`resbone list` or resbone.list_models() shows them)")
    return _MODELS[name]


def create_model(name: str, *, features_only: bool = False, out_indices: Sequence[int] | None = None,
                 **overrides: Any) -> nn.Module:
    """Build the registered model `name` with keyword `overrides`.

    features_only=True (timm's): a backbone (num_classes=None) whose forward returns a list with the map of
    each `out_indices` stage (the model's default when None) and whose feature_info describes them."""
    entrypoint = model_entrypoint(name)
    if "checkpoint" in overrides:
        raise TypeError("resbone.models.registry.create_model builds only; resbone.create_model(name, "
                        "checkpoint=PATH) also loads weights")
    if out_indices is not None:
        overrides["out_indices"] = out_indices
    if not features_only:
        return entrypoint(**overrides)
    if overrides.get("num_classes"):
        raise ValueError(f"features_only=True builds a backbone without a classifier; num_classes="
                         f"{overrides['num_classes']!r} contradicts it (leave it out)")
    model = entrypoint(**dict(overrides, num_classes=None))
    model.features_only = True
    return model
