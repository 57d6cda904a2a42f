"""The model registry: a decorator and a dict, as timm's.

`create_model(name, **overrides)` builds a registered model; `list_models('resnet5*')` lists names
with shell wildcards. Reference tests: tests/models/test_registry.py.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
from typing import Any, Callable

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model"]

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


def create_model(name: str, *, checkpoint: str | os.PathLike | None = None, **overrides: Any) -> nn.Module:
    """Build the registered model `name` with keyword `overrides`; load `checkpoint` (any dialect
    `resbone.convert` knows) when given."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__} {name!r}")
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} ({len(_MODELS)} models are registered: "
                       f"`resbone list` or resbone.list_models() shows them)")
    model = _MODELS[name](**overrides)
    if checkpoint is not None:
        # Imported here because the loader sits above the models (it knows every dialect's names).
        from resbone.convert import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model
