"""`create_model`: a registered model, optionally with weights, as timm's `_factory.create_model`.

It sits above both the models and resbone.convert (a model never imports the loader): it builds with
resbone.models.registry and loads `checkpoint` (a local file or a state dict in any dialect) through
resbone.convert.load_checkpoint, which asks the model's `pretrained_cfg` / `unbuilt_key` what it holds.
Reference tests: tests/models/test_registry.py (strict load of torchvision weights, features_only).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from torch import nn

from resbone.convert import load_checkpoint
from resbone.models import registry

__all__ = ["create_model"]


def create_model(name: str, *, checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
                 features_only: bool = False, out_indices: Sequence[int] | None = None, **overrides: Any) -> nn.Module:
    """Build the registered model `name` with keyword `overrides`; load `checkpoint` (any dialect
    resbone.convert knows, strict) when given.

    features_only=True (timm's): a backbone whose forward returns a list with the maps of `out_indices` in timm's
    numbering (ResNet: 0 = the stem, 1..4 = layer1..layer4; None = all), whose feature_info answers channels() /
    reduction() / module_name(); resbone.models.registry.create_model says the rest (feature_cls, device, dtype)."""
    model = registry.create_model(name, features_only=features_only, out_indices=out_indices, **overrides)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
