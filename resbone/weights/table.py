"""The weights table: one `Weights` per published file of a resbone model, as torchvision's `Weights` enums and
timm's `pretrained_cfg` tags describe theirs (URL, acc@1/5, num_params, evaluation transform, licence).

Names follow timm: `model.tag` (`resnet50.tv2_in1k`); `pretrained=True` takes DEFAULT_TAGS[model]. The rows are
in resbone.weights.published; this module turns them into objects. Reference tests: tests/weights/test_table.py
(every row against torchvision's enums, timm's pretrained_cfg, mmengine's json, mmpretrain's metafile,
pretrainedmodels' settings, fast-reid's model_urls) and the transform against torchvision's ImageClassification.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch
from torch import nn

from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD
from resbone.weights import published as P

__all__ = ["EvalTransform", "SOURCES", "Weights", "all_weights", "get_weights", "list_pretrained", "markdown_table"]

_MEANS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": ((0.5,) * 3, (0.5,) * 3)}
# Detectron's Caffe2 pickles take BGR 0-255 images less the pixel mean (FCOS's INPUT.PIXEL_MEAN), std 1
CAFFE_MEAN = (102.9801, 115.9465, 122.7717)
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's convention: name-<sha256 prefix>.ext


@dataclass(frozen=True)
class Source:
    publisher: str
    licence: str
    dialect: str  # the checkpoint dialect resbone.convert reads the files in
    hash_in_name: bool = True  # its file names end in the sha256 prefix (torch.hub's check_hash convention)


SOURCES = {
    "torchvision": Source("torchvision (PyTorch)", "BSD-3-Clause", "torchvision"),
    "timm": Source("timm (Hugging Face)", "Apache-2.0", "timm"),
    "openmmlab": Source("OpenMMLab (mmcv / mmpretrain)", "Apache-2.0", "mmdet"),
    "detectron": Source("Detectron (MSRA / FAIR weights)", "Apache-2.0", "caffe2"),
    "cadene": Source("Cadene pretrainedmodels", "BSD-3-Clause", "cadene", hash_in_name=False),
    "ibn-net": Source("IBN-Net (XingangPan)", "MIT", "torchvision", hash_in_name=False),
    "fast-reid": Source("fast-reid (JD AI)", "Apache-2.0", "fastreid", hash_in_name=False),
}


@dataclass(frozen=True)
class EvalTransform:
    """The evaluation preprocessing the accuracy was measured with: resize the short side, centre-crop, scale,
    normalise. caffe=True: BGR channels in 0-255 less `mean` (Caffe / Detectron). A (height, width) resize is
    to exactly that size (fast-reid's person crops)."""

    crop: int | tuple[int, int] = 224
    resize: int | tuple[int, int] = 256
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    caffe: bool = False

    def transforms(self) -> nn.Module:
        """A torchvision transform (PIL image or uint8 CHW tensor in, float tensor out), with the steps and
        order of torchvision's `Weights.transforms()` (ImageClassification)."""
        return _Preprocess(self)


class _Preprocess(nn.Module):
    def __init__(self, spec: EvalTransform) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, img: Any) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        s = self.spec
        size = list(s.resize) if isinstance(s.resize, tuple) else [s.resize]
        img = F.resize(img, size, interpolation=InterpolationMode(s.interpolation), antialias=True)
        img = F.center_crop(img, list(s.crop) if isinstance(s.crop, tuple) else [s.crop])
        if not isinstance(img, torch.Tensor):
            img = F.pil_to_tensor(img)
        # Caffe weights read BGR in 0-255; everything else RGB in 0-1
        img = img.float().flip(-3) if s.caffe else F.convert_image_dtype(img, torch.float)
        return F.normalize(img, list(s.mean), list(s.std))

    def extra_repr(self) -> str:
        return repr(self.spec)


@dataclass(frozen=True)
class Weights:
    """One published file of a model: `name` is 'model.tag'."""

    model: str
    tag: str
    url: str
    source: str
    acc1: float | None = None
    acc5: float | None = None
    num_params: int | None = None
    transform: EvalTransform = EvalTransform()
    aliases: tuple[str, ...] = ()  # the scheme names other projects give the same file (torchvision://resnet50)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # what the file needs (style='caffe')
    also_cached_as: tuple[str, ...] = ()  # names other code stored the same file under in torch hub's cache
    results: str = ""  # what the publisher measured when it is not ImageNet top-1 (re-id rank@1 / mAP)

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def licence(self) -> str:
        return SOURCES[self.source].licence

    @property
    def dialect(self) -> str:
        return SOURCES[self.source].dialect

    def transforms(self) -> nn.Module:
        return self.transform.transforms()


def _torchvision() -> list[Weights]:
    rows = []
    for model, tag, file, acc1, acc5, params, resize in P.TORCHVISION:
        version = "imagenet1k_v2" if tag == "tv2_in1k" else "imagenet1k_v1"
        aliases = [f"torchvision://{model}.{version}"] + (
            [f"torchvision://{model}"] if tag == "tv_in1k" and model not in P.TORCHVISION_SINCE_013 else [])
        old = (P.TORCHVISION_OLD_FILES[model],) if tag == "tv_in1k" and model in P.TORCHVISION_OLD_FILES else ()
        rows.append(Weights(model, tag, "https://download.pytorch.org/models/" + file, "torchvision", acc1, acc5,
                            params, EvalTransform(resize=resize), tuple(aliases), also_cached_as=old))
    return rows


def _timm() -> list[Weights]:
    rows = []
    for model, tag, params, crop_pct, size, interpolation, stats, old_url in P.TIMM:
        mean, std = _MEANS[stats]
        # timm's eval transform: resize to floor(size / crop_pct), centre crop `size`
        transform = EvalTransform(crop=size, resize=int(size / crop_pct), interpolation=interpolation,
                                  mean=mean, std=std)
        repo = f"timm/{model}.{tag}"
        rows.append(Weights(model, tag, f"https://huggingface.co/{repo}/resolve/main/model.safetensors", "timm",
                            None, None, params, transform, (f"hf-hub:{repo}",),
                            also_cached_as=(old_url.rpartition("/")[2],) if old_url else ()))
    return rows


def _others() -> list[Weights]:
    caffe = EvalTransform(mean=CAFFE_MEAN, std=(1.0, 1.0, 1.0), caffe=True)
    rows = [Weights(model, tag, url, "openmmlab", acc1, acc5, None, caffe if kwargs.get("style") else EvalTransform(),
                    aliases, MappingProxyType(kwargs))
            for model, tag, url, acc1, acc5, aliases, kwargs in P.OPENMMLAB]
    for model, tag, name, kwargs in P.MSRA:
        path = P.CATALOG[name]
        rows.append(Weights(model, tag, f"https://dl.fbaipublicfiles.com/detectron/{path}", "detectron",
                            transform=caffe, aliases=(f"catalog://ImageNetPretrained/{name}",),
                            model_kwargs=MappingProxyType(kwargs)))
    rows += [Weights(model, "cadene_in1k", url, "cadene", acc1, acc5) for model, url, acc1, acc5 in P.CADENE]
    rows += [Weights(model, "ibn_in1k", url, "ibn-net", acc1, acc5) for model, url, acc1, acc5 in P.IBN]
    person = EvalTransform(crop=P.FASTREID_INPUT, resize=P.FASTREID_INPUT, interpolation="bicubic")
    rows += [Weights(model, tag, url, "fast-reid", transform=person, model_kwargs=MappingProxyType(P.FASTREID_MODEL),
                     results=f"{data} rank@1 {rank1}, mAP {map_}")
             for model, tag, url, data, rank1, map_ in P.FASTREID]
    return rows


_TABLE: dict[str, Weights] = {w.name: w for w in (*_torchvision(), *_timm(), *_others())}


def all_weights() -> list[Weights]:
    return list(_TABLE.values())


def list_pretrained(pattern: str = "*") -> list[str]:
    """'model.tag' names matching a shell-style wildcard, as timm.list_pretrained: `list_pretrained('resnet50*')`."""
    return sorted(name for name in _TABLE if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, pattern + ".*"))


def get_weights(model: str, tag: str | bool | None = None) -> Weights:
    """The weights named `model.tag`, `model` with `tag`, or the model's default (tag None / True)."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a model name, got {type(model).__name__} {model!r}")
    if tag in (None, True) and "." in model:
        model, _, tag = model.partition(".")
    tags = sorted(w.tag for w in _TABLE.values() if w.model == model)
    if not tags:
        from resbone.models.registry import is_model

        what = "is not a registered model (see resbone.list_models())" if not is_model(model) \
            else "has no published weights"
        raise KeyError(f"{model!r} {what}; models with published weights: "
                       f"{', '.join(sorted(P.DEFAULT_TAGS))}")
    if tag in (None, True):
        tag = P.DEFAULT_TAGS[model]
    if not isinstance(tag, str) or f"{model}.{tag}" not in _TABLE:
        raise KeyError(f"{model} has no weights tagged {tag!r}; its tags: {', '.join(tags)} "
                       f"(default {P.DEFAULT_TAGS[model]})")
    return _TABLE[f"{model}.{tag}"]


_TORCHVISION_NAMES = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k", "DEFAULT": True}


def torchvision_tag(weights: Any) -> str | bool:
    """The tag of torchvision's `weights=` argument: 'IMAGENET1K_V1' / ResNet50_Weights.IMAGENET1K_V1 ->
    'tv_in1k', IMAGENET1K_V2 -> 'tv2_in1k', DEFAULT -> True (the default tag, torchvision's DEFAULT)."""
    name = getattr(weights, "name", weights)
    if name not in _TORCHVISION_NAMES:
        raise ValueError(f"weights={weights!r} is not one of torchvision's names {', '.join(_TORCHVISION_NAMES)}; "
                         "or pass pretrained='tag' (resbone.list_pretrained())")
    return _TORCHVISION_NAMES[name]


def find_alias(spec: str) -> Weights | None:
    return next((w for w in _TABLE.values() if spec in w.aliases), None)


def aliases(prefix: str) -> list[str]:
    return sorted(a for w in _TABLE.values() for a in w.aliases if a.startswith(prefix))


def markdown_table(pattern: str = "*") -> str:
    """The table of tags as markdown, as the docs page of pretrained weights holds it."""
    lines = ["| model | tag | source | acc@1 | params (M) | default |", "|---|---|---|---:|---:|:---:|"]
    for w in (_TABLE[name] for name in list_pretrained(pattern)):
        acc = f"{w.acc1:.2f}" if w.acc1 is not None else (w.results or "n/p")
        params = f"{w.num_params / 1e6:.2f}" if w.num_params else "–"
        default = "yes" if P.DEFAULT_TAGS.get(w.model) == w.tag else ""
        lines.append(f"| {w.model} | {w.tag} | {w.source} | {acc} | {params} | {default} |")
    return "\n".join(lines)
