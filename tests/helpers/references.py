"""The reference projects' own model code (mmdetection, mmpretrain, torchreid, fast-reid, Cadene's
pretrainedmodels), imported without the package `__init__`s that pull in what these tests do not need.

The packages are installed with `pip install --no-deps` (see the Makefile): their model files are imported
as they are. Where a package's `__init__` would import its whole tree (mmdet.models imports mmcv.ops, a compiled
extension mmcv-lite does not ship; torchreid and pretrainedmodels import scipy, six, gdown), the package is
registered empty ("hollow") so that only the model files run. Three modules that mmengine / mmcv import at the
top level but never call while building a ResNet are stubbed while the reference loads, and only when they
are not installed: cv2 (images), rich (progress bars), platformdirs (yapf's cache folder).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import tempfile
import types
from typing import Any, Iterator

__all__ = ["TOL", "fastreid_backbone", "fastreid_whole_model", "load_file", "mmdet_resnet", "mmpretrain_backbones",
           "pretrainedmodels_senet", "randomize", "relative_error", "torchreid_models"]

TOL = 1e-4  # DESIGN's equality bar: max abs difference relative to the output's scale

_STUBBED = ("cv2", "rich", "platformdirs")


class _Inert(types.ModuleType):
    """A module whose every attribute is a do-nothing class: enough for `from rich.console import Console`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Inert(spec.name)
        module.__path__ = []
        if spec.name == "platformdirs":
            module.user_cache_dir = lambda *args, **kwargs: tempfile.gettempdir()
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


@contextlib.contextmanager
def _stubs() -> Iterator[None]:
    """Stub the missing top-level modules while a reference imports; take them out of sys.modules afterwards
    so that nothing else in the test session sees a fake cv2."""
    missing = {name for name in _STUBBED if name not in sys.modules and importlib.util.find_spec(name) is None}
    finder = _StubFinder(missing)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in missing]:
            del sys.modules[name]


def _hollow(package: str) -> types.ModuleType:
    """Register `package` without running its __init__, so `package.sub` imports only what sub needs."""
    if package in sys.modules:
        return sys.modules[package]
    parent = package.rpartition(".")[0]
    if parent:
        importlib.import_module(parent)
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"reference package {package} is not installed (see the Makefile's --no-deps line)")
    module = types.ModuleType(package)
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = package
    module.__spec__ = spec
    sys.modules[package] = module
    return module


def load_file(package: str, module: str) -> types.ModuleType:
    """`package.module` imported on its own: every package on the way is hollow."""
    parts = package.split(".")
    for i in range(1, len(parts) + 1):
        _hollow(".".join(parts[:i]))
    return importlib.import_module(f"{package}.{module}")


def mmdet_resnet() -> type:
    """mmdetection 3.x `ResNet` (mmdet/models/backbones/resnet.py) with mmcv's plugins registered."""
    with _stubs():
        _hollow("mmdet.models")
        layers = _hollow("mmdet.models.layers")
        if not hasattr(layers, "ResLayer"):
            layers.ResLayer = importlib.import_module("mmdet.models.layers.res_layer").ResLayer
        resnet = load_file("mmdet.models.backbones", "resnet")
        importlib.import_module("mmcv.cnn")  # registers ContextBlock, GeneralizedAttention, NonLocal2d
    return resnet.ResNet


def mmpretrain_backbones() -> types.SimpleNamespace:
    """mmpretrain 1.x ResNet, ResNetV1c, ResNetV1d, SEResNet (mmpretrain/models/backbones/{resnet,seresnet}.py)."""
    with _stubs():
        _hollow("mmpretrain")  # its __init__ imports the inferencers (importlib_metadata, ...)
        _hollow("mmpretrain.models")
        utils = _hollow("mmpretrain.models.utils")
        if not hasattr(utils, "SELayer"):
            utils.SELayer = importlib.import_module("mmpretrain.models.utils.se_layer").SELayer
        resnet = load_file("mmpretrain.models.backbones", "resnet")
        seresnet = load_file("mmpretrain.models.backbones", "seresnet")
    return types.SimpleNamespace(ResNet=resnet.ResNet, ResNetV1c=resnet.ResNetV1c, ResNetV1d=resnet.ResNetV1d,
                                 SEResNet=seresnet.SEResNet)


def torchreid_models(name: str) -> types.ModuleType:
    """torchreid's `reid/models/<name>.py` (resnet, senet, resnet_ibn_a, ...): each file needs only torch."""
    return load_file("torchreid.reid.models", name)


def pretrainedmodels_senet() -> types.ModuleType:
    """Cadene's pretrainedmodels/models/senet.py (needs only torch)."""
    return load_file("pretrainedmodels.models", "senet")


def fastreid_backbone() -> types.ModuleType:
    """fast-reid's modeling/backbones/resnet.py (fast-reid imports cleanly with torch alone)."""
    return importlib.import_module("fastreid.modeling.backbones.resnet")


def fastreid_whole_model(backbone: Any, *, feat_dim: int, num_classes: int) -> Any:
    """fast-reid's Baseline meta-architecture: `backbone` + EmbeddingHead (GlobalAvgPool, BNNeck, Linear
    classifier), as its configs build it (MODEL.HEADS: NECK_FEAT 'before', WITH_BNNECK True)."""
    from fastreid.modeling.heads.embedding_head import EmbeddingHead
    from fastreid.modeling.meta_arch.baseline import Baseline

    heads = EmbeddingHead(feat_dim=feat_dim, embedding_dim=0, num_classes=num_classes, neck_feat="before",
                          pool_type="GlobalAvgPool", cls_type="Linear", scale=1, margin=0, with_bnneck=True,
                          norm_type="BN")
    return Baseline(backbone=backbone, heads=heads, pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0],
                    loss_kwargs={"loss_names": ()})


def randomize(model: Any, seed: int = 0) -> Any:
    """Random values where a reference initialises constants (norm affines and statistics, the zero-initialised
    last conv of a ContextBlock / NonLocal2d, attention scalars), so that a weight loaded into the wrong place
    changes the output. Returns the model in eval mode (mmdet's train()/eval() return None)."""
    import torch
    from torch import nn

    from tests.helpers import randomize_norms

    randomize_norms(model, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                continue
            for param in module.parameters(recurse=False):
                if param.numel() == 1 or bool((param == param.flatten()[0]).all()):
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    model.eval()
    return model


def relative_error(actual: Any, expected: Any) -> float:
    """max |actual - expected| / max |expected|, the quantity TOL bounds."""
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
