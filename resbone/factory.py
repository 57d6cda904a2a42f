"""`create_model`: a registered model, optionally with weights, as timm's `_factory.create_model`.

It sits above both the models and resbone.convert (a model never imports the loader): it builds with
resbone.models.registry and loads `checkpoint` (a local file, an address such as torchvision://resnet50, or a
state dict in any dialect) through resbone.convert.load_checkpoint, which asks the model's `pretrained_cfg` /
`unbuilt_key` what it holds. `pretrained=True | 'tag'` takes a published file from resbone.weights (the model
arguments the file needs, e.g. style='caffe', first; the caller's win), fetched into torch hub's cache as
torchvision's `resnet50(weights=...)` and timm's `create_model(pretrained=True)` do.
Reference tests: tests/models/test_registry.py (strict load of torchvision weights, features_only),
tests/weights/test_pretrained.py (pretrained with num_classes / features_only, served from 127.0.0.1).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from torch import nn

from resbone.convert import load_checkpoint
from resbone.models import registry
from resbone.weights import get_weights, resolve
from resbone.weights.table import torchvision_tag

__all__ = ["create_model"]


def create_model(name: str, pretrained: bool | str = False, *,
                 checkpoint: str | os.PathLike | Mapping[str, Any] | None = None, progress: bool = True,
                 features_only: bool = False, out_indices: Sequence[int] | None = None, **overrides: Any) -> nn.Module:
    """Build the registered model `name` with keyword `overrides`; load `checkpoint` (any dialect
    resbone.convert knows, strict) when given.

    pretrained: True (the model's default tag, or the tag of a 'model.tag' name, timm's form), a tag
    ('tv_in1k'), or False. A num_classes other than the file's keeps the classifier at init, with one warning.
    weights: torchvision's name for the same ('IMAGENET1K_V1', 'IMAGENET1K_V2', 'DEFAULT' or its enum).
    progress: show a progress bar while downloading.
    features_only=True (timm's): a backbone whose forward returns a list with the maps of `out_indices` in timm's
    numbering (ResNet: 0 = the stem, 1..4 = layer1..layer4; None = all), whose feature_info answers channels() /
    reduction() / module_name(); resbone.models.registry.build_registered_model says the rest (feature_cls,
    device, dtype)."""
    if not isinstance(pretrained, (bool, str)):
        raise TypeError(f"pretrained must be True, False or a tag such as 'tv_in1k', got {pretrained!r}")
    if overrides.get("weights") is not None:  # torchvision's resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
        pretrained = pretrained or torchvision_tag(overrides.pop("weights"))
    overrides.pop("weights", None)
    name, _, tag = name.partition(".") if isinstance(name, str) else (name, "", "")
    if isinstance(pretrained, str) and tag and pretrained != tag:
        raise ValueError(f"the name's tag {tag!r} and pretrained={pretrained!r} differ; give one")
    tag = pretrained if isinstance(pretrained, str) else tag
    weights = None
    if pretrained or tag:  # 'model.tag' without pretrained builds what the tag needs, as timm's name.tag does
        if pretrained and checkpoint is not None:
            raise ValueError(f"give pretrained={pretrained!r} or checkpoint={checkpoint!r}, not both")
        weights = get_weights(name, tag or None)
        overrides = {**weights.model_kwargs, **overrides}
    model = registry.build_registered_model(name, features_only=features_only, out_indices=out_indices, **overrides)
    if pretrained:
        checkpoint = resolve(weights, progress=progress)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
