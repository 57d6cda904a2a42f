"""Every ecosystem's way of naming a checkpoint, turned into a URL and a cache file name.

torchvision:// and modelzoo:// (mmcv / mmengine: torchvision's V1 files, or NAME.imagenet1k_v1/_v2),
open-mmlab:// and openmmlab:// (mmengine/hub/openmmlab.json), mmcls:// and mmpretrain:// (mmengine/hub/mmcls.json),
detectron2://PATH (detectron2's Detectron2Handler: https://dl.fbaipublicfiles.com/detectron2/PATH),
catalog://ImageNetPretrained/NAME (maskrcnn-benchmark / FCOS ModelCatalog), hf-hub:ORG/REPO (timm:
the repo's model.safetensors), and plain http(s):// URLs. Reference tests: tests/weights/test_schemes.py (each
scheme against the mapping of the project that defines it, where installed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from resbone.weights import published
from resbone.weights.table import HASH_IN_NAME, SOURCES, Weights, aliases, find_alias

__all__ = ["Location", "SCHEMES", "has_scheme", "locate"]

_DETECTRON2 = "https://dl.fbaipublicfiles.com/detectron2/"
_CATALOG = "catalog://ImageNetPretrained/"
SCHEMES = ("torchvision://", "modelzoo://", "open-mmlab://", "openmmlab://", "mmcls://", "mmpretrain://",
           "detectron2://", "catalog://", "hf-hub:", "http://", "https://")
_RENAMED = {"modelzoo://": "torchvision://", "openmmlab://": "open-mmlab://", "mmpretrain://": "mmcls://"}


@dataclass(frozen=True)
class Location:
    """Where a checkpoint comes from and where it lives in torch hub's cache."""

    spec: str
    url: str
    file_name: str
    also_cached_as: tuple[str, ...] = ()
    weights: Weights | None = None

    def sha256_prefix(self, name: str | None = None) -> str | None:
        """The hash prefix `name` (default: file_name) carries, unless the publisher's names carry no hash."""
        if self.weights is not None and not SOURCES[self.weights.source].hash_in_name:
            return None
        match = HASH_IN_NAME.search(name or self.file_name)
        return match.group(1) if match else None


def has_scheme(spec: object) -> bool:
    """True for a string naming a checkpoint by scheme (torchvision://NAME, hf-hub:timm/NAME, https://...)."""
    return isinstance(spec, str) and spec.startswith(SCHEMES)


def _file_name(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.lstrip("/").split("/")
    if parts.netloc == "huggingface.co" and len(path) >= 5 and path[2] == "resolve":
        return f"{path[1]}.{path[-1]}"  # hub files are all model.safetensors: keep the repo's name
    if not path or not path[-1]:
        raise ValueError(f"URL {url!r} names no file (its path ends in '/'); give the URL of a checkpoint file")
    return path[-1]


def locate(spec: str | Weights) -> Location:
    """The URL and cache file name of `spec`; a name no publisher gives is a KeyError listing the known ones."""
    if isinstance(spec, Weights):
        return Location(spec.name, spec.url, _file_name(spec.url), spec.also_cached_as, spec)
    if not has_scheme(spec):
        raise ValueError(f"{spec!r} is not a checkpoint address; allowed schemes: {', '.join(SCHEMES)}")
    for old, new in _RENAMED.items():
        if spec.startswith(old):
            spec = new + spec[len(old):]
    if spec.startswith(("http://", "https://")):
        return Location(spec, spec, _file_name(spec))
    weights = find_alias(spec)
    if weights is not None:
        return Location(spec, weights.url, _file_name(weights.url), weights.also_cached_as, weights)
    if spec.startswith("detectron2://"):
        url = _DETECTRON2 + spec[len("detectron2://"):].lstrip("/")
        return Location(spec, url, _file_name(url))
    if spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:"):].split("@")[0]
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ValueError(f"{spec!r}: hf-hub: takes ORG/REPO, e.g. hf-hub:timm/resnet50d.ra2_in1k")
        url = f"https://huggingface.co/{repo}/resolve/main/model.safetensors"
        return Location(spec, url, _file_name(url))
    if spec.startswith(_CATALOG) and spec[len(_CATALOG):] in published.CATALOG:
        url = "https://dl.fbaipublicfiles.com/detectron/" + published.CATALOG[spec[len(_CATALOG):]]
        return Location(spec, url, _file_name(url))
    scheme = spec.split("//")[0] + "//"
    known = aliases(scheme) if scheme != "catalog://" else [_CATALOG + n for n in published.CATALOG]
    raise KeyError(f"{spec!r} names no checkpoint resbone knows; {scheme} names it knows: {', '.join(known)}")
