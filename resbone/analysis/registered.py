"""Registered models by name for analysis: built on the meta device (shapes only, no memory for
weights), with errors that suggest close names and arguments (tests/analysis/test_summary.py checks
the messages and that a meta-built model gives torchvision's published counts).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
from torch import nn

from resbone.models.registry import build_registered_model, is_model, list_models
from resbone.utils.checks import did_you_mean

__all__ = ["analyse_by_name", "close_names", "create_meta_model", "matching_models"]


def create_meta_model(name: str, **kwargs: Any) -> nn.Module:
    """`build_registered_model(name, **kwargs)` on the meta device (shapes only), with errors that suggest
    names.
    Falls back to the CPU for a model whose construction needs real tensors."""
    if not is_model(name):
        raise KeyError(f"unknown model {name!r}; {close_names(name, list_models())} "
                       f"(`resbone list` shows all {len(list_models())})")
    try:
        with torch.device("meta"):
            return build_registered_model(name, **kwargs)
    except TypeError as error:
        named = [k for k in kwargs if f"'{k}'" in str(error)]
        if named and "multiple values" in str(error):
            raise TypeError(f"{name} fixes {named[0]!r} itself, so it cannot be overridden; pick the registered "
                            f"model that has the value you want (`resbone list`)") from error
        allowed = _model_arguments(name)
        # Prefer the key Python named ("unexpected keyword argument 'depht'"): a factory may accept
        # torchvision's spellings that the model class's signature does not list.
        bad = named or [k for k in kwargs if allowed and k not in allowed]
        if bad and allowed:
            raise TypeError(f"{name} has no argument {bad[0]!r}; {close_names(bad[0], allowed)}") from error
        raise
    except (NotImplementedError, RuntimeError):
        return build_registered_model(name, **kwargs)


def analyse_by_name(name: str, kwargs: dict[str, Any], analyse: Callable[[nn.Module], Any]) -> Any:
    """`analyse(create_meta_model(name, **kwargs))`, again on the CPU if an op has no meta-device kernel."""
    model = create_meta_model(name, **kwargs)
    try:
        return analyse(model)
    except NotImplementedError:
        if next(iter(model.parameters()), torch.empty(0)).device.type != "meta":
            raise
    return analyse(build_registered_model(name, **kwargs))


def matching_models(pattern: str = "*") -> list[str]:
    """`list_models(pattern)`, but a pattern that matches nothing is a KeyError naming close names."""
    names = list_models(pattern)
    if not names:
        raise KeyError(f"no registered model matches {pattern!r}; {close_names(pattern, list_models())}")
    return names


def _model_arguments(name: str) -> list[str]:
    try:
        with torch.device("meta"):
            model = build_registered_model(name)
    except Exception:  # noqa: BLE001  (only used to phrase a better error message)
        return []
    return [p for p in inspect.signature(type(model).__init__).parameters if p not in ("self", "args", "kwargs")]


def close_names(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    hint = did_you_mean(name, choices, n=5, cutoff=0.5)
    if hint:
        return hint
    return "choose from " + ", ".join(choices[:8]) + (f", ... ({len(choices)} in all)" if len(choices) > 8 else "")
