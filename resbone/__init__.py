"""resbone: one PyTorch implementation of the ResNet family, speaking every ecosystem's dialect.

Importing the package changes nothing in the caller's process and loads nothing heavy: each public name
(and each subpackage, `resbone.detection` ...) is imported on first use (PEP 562, as scipy and
scikit-image do), so `import resbone; resbone.create_model("resnet18")` never loads the detector's stack
(yacs, pycocotools). The `resbone` command sets its own thread policy (resbone/cli/__init__.py).
Proven by tests/test_imports.py.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (tool.setuptools.dynamic)

# public name -> the module that defines it
_EXPORTS = {
    "BasicBlock": "resbone.models.resnet", "Bottleneck": "resbone.models.resnet",
    "ResLayer": "resbone.models.resnet", "ResNet": "resbone.models.resnet",
    "MobileNetV2": "resbone.models.mobilenetv2",
    "build_backbone": "resbone.builders",
    "build_fcos_backbone": "resbone.detection.backbone",
    "convert_state_dict": "resbone.convert", "detect_dialect": "resbone.convert",
    "load_checkpoint": "resbone.convert",
    "create_model": "resbone.factory",
    "find_config": "resbone.utils.configs", "list_configs": "resbone.utils.configs",
    "is_model": "resbone.models.registry", "list_models": "resbone.models.registry",
    "register_model": "resbone.models.registry",
    "get_weights": "resbone.weights", "list_pretrained": "resbone.weights",
}

__all__ = [  # = sorted(_EXPORTS), written out for linters
    "BasicBlock", "Bottleneck", "MobileNetV2", "ResLayer", "ResNet", "build_backbone", "build_fcos_backbone",
    "convert_state_dict", "create_model", "detect_dialect", "find_config", "get_weights", "is_model",
    "list_configs", "list_models", "list_pretrained", "load_checkpoint", "register_model"
]

if TYPE_CHECKING:  # what static type checkers and IDEs see; at run time __getattr__ imports these on use
    from resbone.builders import build_backbone
    from resbone.convert import convert_state_dict, detect_dialect, load_checkpoint
    from resbone.detection.backbone import build_fcos_backbone
    from resbone.factory import create_model
    from resbone.models.mobilenetv2 import MobileNetV2
    from resbone.models.registry import is_model, list_models, register_model
    from resbone.models.resnet import BasicBlock, Bottleneck, ResLayer, ResNet
    from resbone.utils.configs import find_config, list_configs
    from resbone.weights import get_weights, list_pretrained


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _submodules():  # `import resbone; resbone.detection` as before
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def _submodules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_submodules()})
