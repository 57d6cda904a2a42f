"""Fetching published checkpoints into torch hub's cache, as torchvision's and timm's `pretrained=True` do.

The cache is torch hub's ($TORCH_HOME/hub/checkpoints, torch.hub.get_dir()), so a file torchvision, timm or
mmcv already downloaded is used with no request; timm's hub files are also found in huggingface_hub's cache
when that package is installed. Downloads go through torch.hub.download_url_to_file (proxies from the usual
environment variables, a tqdm bar) into a temporary name; the file is checked (the sha256 prefix its name
carries, and that it is a whole checkpoint: zip CRCs, a complete pickle, a safetensors header matching the
size) before it takes its cache name, so a transfer cut short never lands in the cache. A cached file that
fails the same check is fetched again, once, with a warning. RESBONE_OFFLINE=1 or HF_HUB_OFFLINE=1: no request.
Reference tests: tests/weights/test_hub.py (a 127.0.0.1 server counting requests).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickletools
import urllib.error
import uuid
import warnings
import zipfile
from http.client import HTTPException
from pathlib import Path

import torch.hub

from resbone.weights.schemes import Location, locate
from resbone.weights.table import Weights

__all__ = ["OFFLINE_VARIABLES", "DownloadError", "cache_dir", "cached_file", "is_offline", "resolve", "verify"]

OFFLINE_VARIABLES = ("RESBONE_OFFLINE", "HF_HUB_OFFLINE")


class DownloadError(FileNotFoundError):
    """A checkpoint that is not in the cache and could not be fetched (network, offline mode, bad file)."""


def cache_dir() -> Path:
    """torch hub's checkpoint folder: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off") for v in OFFLINE_VARIABLES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, sha256_prefix: str | None) -> str | None:
    """Why `path` is not a whole checkpoint (None when it is): another hash than its name's, a truncated zip,
    pickle or safetensors file. Nothing in the file is executed (pickletools only parses opcodes)."""
    if sha256_prefix and not _sha256(path).startswith(sha256_prefix):
        return f"its sha256 does not start with {sha256_prefix}, the hash its name carries"
    with open(path, "rb") as f:
        head = f.read(16)
        try:
            if head.startswith(b"PK\x03\x04"):
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                return f"member {bad} of the zip is damaged" if bad else None
            if len(head) >= 9 and head[8:9] == b"{":
                size = int.from_bytes(head[:8], "little")
                f.seek(8)
                header = json.loads(f.read(size))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                expected = 8 + size + end
                return None if path.stat().st_size == expected else \
                    f"it holds {path.stat().st_size} bytes, its safetensors header describes {expected}"
            if head[:1] == b"\x80":
                f.seek(0)
                for _ in pickletools.genops(f):
                    pass
                return None
        except (zipfile.BadZipFile, ValueError, KeyError, TypeError, EOFError, OSError) as error:
            return f"it is truncated or damaged ({type(error).__name__}: {str(error)[:80]})"
    return f"it is not a checkpoint (first bytes {head[:8]!r})"


def _hf_cached(location: Location) -> Path | None:
    """timm's own download of the same hub file (huggingface_hub's cache), when that package is installed."""
    if not location.url.startswith("https://huggingface.co/"):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    org, repo, _, revision, *file = location.url[len("https://huggingface.co/"):].split("/")
    found = try_to_load_from_cache(f"{org}/{repo}", "/".join(file), revision=revision)
    return Path(found) if isinstance(found, str) else None


def cached_file(spec: str | Weights) -> Path | None:
    """The cached copy of `spec` (any name it is cached under), or None; makes no request."""
    location = locate(spec)
    for name in (location.file_name, *location.also_cached_as):
        if (path := cache_dir() / name).is_file():
            return path
    return _hf_cached(location)


def _by_hand(location: Location, target: Path) -> str:
    return f"download {location.url} by hand and save it as {target}"


def _download(location: Location, target: Path, progress: bool) -> None:
    """download_url_to_file into a temporary name beside `target`; checked, then renamed (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    try:
        try:
            download_url_to_file(location.url, str(partial), progress=progress)
        except (urllib.error.URLError, HTTPException, OSError, RuntimeError) as error:
            reason = getattr(error, "reason", None) or error
            raise DownloadError(f"could not download {location.url} ({reason}) into {target}; "
                                f"{_by_hand(location, target)}") from None
        problem = check_file(partial, location.sha256_prefix())
        if problem:
            raise DownloadError(f"the file downloaded from {location.url} was refused: {problem}; nothing was "
                                f"stored at {target}; try again or {_by_hand(location, target)}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def download_url_to_file(url: str, dst: str, *, progress: bool) -> None:
    torch.hub.download_url_to_file(url, dst, progress=progress)


def resolve(spec: str | Weights, *, progress: bool = True) -> Path:
    """The local file of a checkpoint address (torchvision://resnet50, catalog://ImageNetPretrained/MSRA/R-50,
    hf-hub:timm/NAME, https://...) or a Weights entry: the cached copy, else a download into torch hub's cache."""
    location = locate(spec)
    target = cache_dir() / location.file_name
    found = cached_file(spec)
    if found is not None:
        # another project's cached copy carries its own hash; torchvision's old names carry theirs
        problem = check_file(found, location.sha256_prefix(found.name))
        if problem is None:
            return found
        if is_offline():
            raise DownloadError(f"the cached {found} is damaged ({problem}) and offline mode is on "
                                f"({_offline_variable()}); {_by_hand(location, target)}")
        warnings.warn(f"the cached {found} is damaged ({problem}); downloading it again from {location.url}",
                      stacklevel=2)
        if found.parent == cache_dir():
            found.unlink()
    elif is_offline():
        raise DownloadError(f"{location.spec} is not in the cache and offline mode is on ({_offline_variable()}); "
                            f"{_by_hand(location, target)}")
    _download(location, target, progress)
    return target


def _offline_variable() -> str:
    return next(f"{v}={os.environ[v]}" for v in OFFLINE_VARIABLES if os.environ.get(v))


def verify(spec: str | Weights) -> Path:
    """Check the cached copy of `spec` (hash, completeness) without any request; a ValueError says what is wrong."""
    location = locate(spec)
    found = cached_file(spec)
    if found is None:
        raise DownloadError(f"{location.spec} is not in the cache ({cache_dir() / location.file_name}); "
                            f"`resbone weights download {location.spec}` fetches it")
    problem = check_file(found, location.sha256_prefix(found.name))
    if problem:
        raise ValueError(f"the cached {found} is damaged: {problem}; `resbone weights download {location.spec}` "
                         f"fetches it again")
    return found
