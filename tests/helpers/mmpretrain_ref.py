"""mmpretrain's own backbone classes (mmpretrain 1.2.0 over mmcv-lite 2.1.0 and mmengine), importable
without their heavy package imports: `mmpretrain_backbone(name)` returns e.g. mmpretrain's `SEResNeXt`.

The packages are installed with --no-deps; their `__init__`s pull opencv, rich and platformdirs, which the
model files never use. So the `mmcv` and `mmpretrain` packages are entered without running their
`__init__` (a bare package object over the real directory), and the three missing modules are inert
stand-ins (used only for console output, cache paths and image I/O by mmengine's runner and hooks).
Every module that defines a layer (mmcv.cnn, mmengine.model, mmpretrain's backbones) is the real file.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

__all__ = ["mmpretrain_backbone"]

_STAND_INS = ("cv2", "rich", "platformdirs")
_BARE_PACKAGES = ("mmcv", "mmpretrain", "mmpretrain.models", "mmpretrain.models.backbones",
                  "mmpretrain.models.utils")
_FILES = {"ResNet": "resnet", "ResNetV1c": "resnet", "ResNetV1d": "resnet", "ResNeXt": "resnext",
          "SEResNet": "seresnet", "SEResNeXt": "seresnext", "MobileNetV2": "mobilenet_v2"}


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Modules for the packages that are not installed: any capitalised name is an inert class, any other
    name a function returning a temporary directory (platformdirs.user_cache_dir is the one called)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in _STAND_INS:  # reached only when no real finder found it
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def attribute(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            if name[:1].isupper():
                return type(name, (), {"__init__": lambda self, *args, **kwargs: None})
            return lambda *args, **kwargs: tempfile.gettempdir()

        module.__getattr__ = attribute  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _install() -> None:
    if any(isinstance(finder, _StandIn) for finder in sys.meta_path):
        return
    sys.meta_path.append(_StandIn())  # after the real finders: only what is missing is stood in for
    for name in _BARE_PACKAGES:
        if name not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(name.split(".")[0])
            if spec is None or spec.submodule_search_locations is None:
                raise ModuleNotFoundError(f"{name} is not installed (pip install --no-deps mmpretrain==1.2.0 "
                                          f"mmcv-lite==2.1.0 mmengine)")
            root = Path(next(iter(spec.submodule_search_locations)))
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = package
    sys.modules["mmcv"].__version__ = importlib.metadata.version("mmcv-lite")
    # the one name a backbone file takes from the (bare) utils package itself rather than from a submodule
    utils = sys.modules["mmpretrain.models.utils"]
    utils.make_divisible = importlib.import_module("mmpretrain.models.utils.make_divisible").make_divisible


def mmpretrain_backbone(name: str) -> type:
    """mmpretrain's backbone class `name` (ResNet, ResNetV1c, ResNetV1d, ResNeXt, SEResNet, SEResNeXt,
    MobileNetV2)."""
    _install()
    return getattr(importlib.import_module(f"mmpretrain.models.backbones.{_FILES[name]}"), name)
