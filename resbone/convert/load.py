"""`load_checkpoint`: any dialect's weights into a resbone model, with one clear report.

What it does beyond `model.load_state_dict`: reads files safely (resbone.convert.io), picks the
dialect whose renaming matches the model best, strips / adds the `backbone.` prefix when a detector's
weights go into a backbone or ImageNet weights into a detector, drops a classifier the model does not
have (silently) or whose class count differs (with a warning), adapts the first conv to in_channels
!= 3 (sum for one channel, else repeat and scale by 3 / in_channels, as timm's adapt_input_conv),
and tolerates what a checkpoint cannot be expected to hold: BatchNorm's num_batches_tracked and the
offset convs of deformable convs (zero-initialised, which makes them plain convs).
Missing, unexpected and shape-mismatched keys are named in one ValueError (strict=True) or returned.

Reference tests: tests/convert/test_load.py.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from resbone.convert.common import TORCHVISION_BODY_KEY, StateDict, strip_prefix
from resbone.convert.dialects import DIALECTS, resolve_dialect
from resbone.convert.io import load_state_dict_file, unwrap_state_dict

__all__ = ["LoadReport", "load_checkpoint"]

_CLASSIFIER = ("fc.weight", "fc.bias", "classifier.1.weight", "classifier.1.bias")
_SHOWN = 10


@dataclass
class LoadReport:
    """What load_checkpoint did. `ok` is True when nothing was missing, unexpected or mismatched."""

    dialect: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (in the model, not in the checkpoint): {_few(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (in the checkpoint, not in the model): "
                         f"{_few(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched[:_SHOWN]]
            more = f" and {len(self.mismatched) - _SHOWN} more" if len(self.mismatched) > _SHOWN else ""
            parts.append(f"{len(self.mismatched)} with another shape: {'; '.join(shown)}{more}")
        return "; ".join(parts)

    def __str__(self) -> str:
        head = f"dialect {self.dialect}: loaded {len(self.loaded)} tensors"
        extra = [f"dropped {len(self.dropped)}" if self.dropped else "",
                 f"kept {len(self.initialized)} at init" if self.initialized else "",
                 f"adapted {', '.join(self.adapted)}" if self.adapted else ""]
        tail = ", ".join(e for e in extra if e)
        return head + (f", {tail}" if tail else "") + (f"; {self.problems()}" if not self.ok else "")


def _few(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _align(native: StateDict, model_keys: Mapping[str, Any]) -> tuple[StateDict, list[str]]:
    """Fit a detector's weights to a backbone model (take `backbone.*`) or a backbone's to a detector
    (prefix `backbone.`); returns the aligned dict and the keys left out."""
    model_detector = any(k.startswith("backbone.") for k in model_keys)
    ckpt_detector = any(k.startswith("backbone.") for k in native)
    if ckpt_detector and not model_detector:
        body = strip_prefix(native, "backbone.")
        if len(body.keys() & model_keys.keys()) > len(native.keys() & model_keys.keys()):
            return body, sorted(k for k in native if not k.startswith("backbone."))
    if model_detector and not ckpt_detector:
        prefixed = {"backbone." + k: v for k, v in native.items()}
        if len(prefixed.keys() & model_keys.keys()) > len(native.keys() & model_keys.keys()):
            return prefixed, []
    return native, []


def _first_conv(model_state: Mapping[str, torch.Tensor]) -> str | None:
    return next((k for k, v in model_state.items() if k.endswith("weight") and v.dim() == 4), None)


def _adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _unbuilt_features(model: nn.Module) -> Any:
    """A test for checkpoint keys of stages a MobileNetV2 backbone leaves out: it builds only up to its
    last out_index (so every parameter gets a gradient), and a full checkpoint's later `features.N` have
    nowhere to go; they are dropped like a classifier the backbone does not have, not "unexpected"."""
    from resbone.models.mobilenetv2 import MobileNetV2

    built = {f"{name}.features." if name else "features.": len(module.features)
             for name, module in model.named_modules() if isinstance(module, MobileNetV2) and not module.num_classes}

    def unbuilt(key: str) -> bool:
        for prefix, count in built.items():
            index = key[len(prefix):].split(".", 1)[0] if key.startswith(prefix) else ""
            if index.isdigit() and int(index) >= count:
                return True
        return False

    return unbuilt


def _read(checkpoint: Any) -> StateDict:
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_state_dict_file(checkpoint)
    if isinstance(checkpoint, Mapping):
        return unwrap_state_dict(checkpoint)
    raise TypeError(f"checkpoint must be a file path or a state dict, got {type(checkpoint).__name__}")


def _choose(state_dict: StateDict, model_state: Mapping[str, torch.Tensor], options: dict) -> str:
    best, best_score = None, 0
    for name, dialect in DIALECTS.items():
        try:
            native = dialect.to_native(state_dict, **(options if name == "caffe2" else {}))
        except (ValueError, TypeError, KeyError):
            continue
        aligned, _ = _align(native, model_state)
        score = sum(1 for k, v in aligned.items() if k in model_state and v.shape == model_state[k].shape)
        if score > best_score:
            best, best_score = name, score
    if best == "resbone" and all(TORCHVISION_BODY_KEY.match(k) for k in state_dict):
        best = "torchvision"  # the same names; report the ecosystem they come from
    if best is None:
        raise ValueError(f"no dialect ({', '.join(DIALECTS)}) turns this checkpoint's names into the model's: "
                         f"checkpoint keys include {list(state_dict)[:5]}, model keys include "
                         f"{list(model_state)[:5]}")
    return best


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any], dialect: str = "auto",
                    strict: bool = True, *, prefix: str | None = None, **options: Any) -> LoadReport:
    """Load `checkpoint` (a file path or a state dict, in any dialect) into `model`.

    dialect: 'auto' (the dialect that matches the model's names best) or a name in DIALECTS.
    strict: True raises one ValueError naming every missing, unexpected and shape-mismatched key and
    loads nothing; False loads what matches and returns the LoadReport with the problems listed.
    prefix: take only the checkpoint keys under this prefix, without it (mmdet init_cfg's `prefix`).
    options: dialect options for the reading side (caffe2: eps)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if unknown := sorted(set(options) - {"eps"}):
        raise TypeError(f"unknown option(s) {unknown}; load_checkpoint takes eps (caffe2)")
    state_dict = _read(checkpoint)
    if prefix:
        # mmengine adds the dot too: init_cfg prefix='backbone' means the keys under 'backbone.'
        prefix = prefix if prefix.endswith(".") else prefix + "."
        state_dict = strip_prefix(state_dict, prefix)
        if not state_dict:
            raise ValueError(f"no checkpoint key starts with prefix {prefix!r}")
    model_state = model.state_dict()
    name = _choose(state_dict, model_state, options) if dialect == "auto" else resolve_dialect(dialect)
    native = DIALECTS[name].to_native(state_dict, **(options if name == "caffe2" else {}))
    native, dropped = _align(native, model_state)
    report = LoadReport(dialect=name, dropped=dropped)

    first = _first_conv(model_state)
    unbuilt = _unbuilt_features(model)
    to_load: StateDict = {}
    for key, value in native.items():
        target = model_state.get(key)
        classifier = any(key == c or key.endswith("." + c) for c in _CLASSIFIER)
        if target is None:
            if key.endswith("num_batches_tracked") or classifier or unbuilt(key):
                report.dropped.append(key)
            else:
                report.unexpected.append(key)
            continue
        if value.shape != target.shape:
            if key == first and value.dim() == 4 and value.shape[0] == target.shape[0] \
                    and value.shape[2:] == target.shape[2:]:
                value = _adapt_input_conv(value, target.shape[1])
                report.adapted.append(f"{key} ({value.shape[1]} input channels)")
            elif classifier and value.shape[0] != target.shape[0]:
                # another number of classes; another input width (resnet18's fc into resnet50) is a mismatch
                if key.endswith("weight"):
                    warnings.warn(f"dropped the checkpoint's classifier {key} {list(value.shape)}: the model's is "
                                  f"{list(target.shape)} (another number of classes); it keeps its initial "
                                  "weights", stacklevel=2)
                report.dropped.append(key)
                report.initialized.append(key)
                continue
            else:
                report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
                continue
        to_load[key] = value
    for key in model_state:
        if key in to_load or key in report.initialized or any(key == m[0] for m in report.mismatched):
            continue
        if key.endswith("num_batches_tracked") or ".conv_offset." in key:
            report.initialized.append(key)
        else:
            report.missing.append(key)
    if strict and not report.ok:
        raise ValueError(f"checkpoint does not fit {type(model).__name__} (dialect {name}): {report.problems()}. "
                         "Pass strict=False to load what fits and get this report back")
    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report
