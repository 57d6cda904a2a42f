"""torch.hub entry points: `torch.hub.load("OWNER/resbone", "resnet50", pretrained=True)` (or a local clone with
source="local"), as torchvision's hubconf gives its models. Every registered model is an entry; `pretrained`
is True (the default tag), a tag such as "tv_in1k", or False; other keywords go to resbone.create_model.
Reference test: tests/weights/test_hubconf.py (torch.hub.load(..., source="local") against torchvision).
"""
dependencies = ["torch", "torchvision"]

from resbone.factory import create_model as _create_model  # noqa: E402 (torch.hub reads `dependencies` first)
from resbone.models.registry import list_models as _list_models  # noqa: E402


def _entry(name: str):
    def entry(pretrained: bool | str = False, progress: bool = True, **kwargs):
        return _create_model(name, pretrained, progress=progress, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"resbone's {name}; pretrained=True | 'tag' loads published weights (docs/pretrained.md)."
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
