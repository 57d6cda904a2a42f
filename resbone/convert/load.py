"""`load_checkpoint`: any dialect's weights into a resbone model, with one clear report.

What it does beyond `model.load_state_dict`: reads files safely (resbone.convert.io), refuses NaN / Inf weights
(unless allow_nonfinite=True), picks the dialect whose renaming matches the model best, strips / adds the
`backbone.` prefix when a detector's weights go into a backbone or ImageNet weights into a detector, drops a
classifier the model does not have (silently) or whose class count differs (with a warning), drops a re-id head
(torchreid's embedding, fast-reid's BNNeck and classifier) with a warning, adapts the first conv to in_channels
!= 3 (sum for one channel, else repeat and scale by 3 / in_channels, as timm's adapt_input_conv), warns when
the checkpoint's ecosystem builds the model differently in a way its keys cannot show (fast-reid's ceil-mode stem
pool), and tolerates what a checkpoint cannot be expected to hold: BatchNorm's num_batches_tracked and the offset
convs of deformable convs (zero-initialised, which makes them plain convs).
Missing, unexpected and shape-mismatched keys are named in one ValueError (strict=True) or returned.
What the model is (its first conv, its classifier, the keys a truncated backbone does not build) is asked of the
model (`describe_model`), as timm's loader reads `pretrained_cfg`.

Reference tests: tests/convert/test_load.py, tests/convert/test_reid_dialects.py.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from resbone.convert.common import TORCHVISION_BODY_KEY, StateDict, check_finite, is_native_key, strip_prefix
from resbone.convert.detect import check_unambiguous
from resbone.convert.dialects import DIALECTS, check_options, resolve_dialect
from resbone.convert.io import load_state_dict_file, unwrap_state_dict

__all__ = ["LoadReport", "ModelDescription", "describe_model", "load_checkpoint"]

_SHOWN = 10
_READ_OPTIONS = set().union(*(d.read_options for d in DIALECTS.values())) - {"model"}


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
    notes: list[str] = field(default_factory=list)

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
                 f"adapted {', '.join(self.adapted)}" if self.adapted else "", *self.notes]
        tail = ", ".join(e for e in extra if e)
        return head + (f", {tail}" if tail else "") + (f"; {self.problems()}" if not self.ok else "")


def _few(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


@dataclass
class ModelDescription:
    """What the loader needs to know about a model, in its own state-dict names."""

    first_convs: set[str]  # weight keys of the convs that read the image
    classifiers: set[str]  # module prefixes ('fc.', 'backbone.classifier.1.') of classifiers
    unbuilt: Callable[[str], bool]  # a checkpoint key naming a part the model does not build
    stem_pool: str | None  # 'ceil' or 'padded' (ResNet's stem max-pool), None when it has none


def describe_model(model: nn.Module) -> ModelDescription:
    """Ask `model` (and the resbone networks inside it, e.g. a detector's backbone) what it is: timm's
    `pretrained_cfg` ('first_conv', 'classifier') and `unbuilt_key(key)` for keys a truncated backbone leaves out."""
    first, classifiers, parts, pools = set(), set(), [], set()
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        cfg = getattr(module, "pretrained_cfg", None)
        if isinstance(cfg, Mapping):
            if isinstance(cfg.get("first_conv"), str):
                first.add(f"{prefix}{cfg['first_conv']}.weight")
            if cfg.get("classifier"):
                classifiers.add(f"{prefix}{cfg['classifier']}.")
            if callable(getattr(module, "unbuilt_key", None)):
                parts.append((prefix, module.unbuilt_key))
        if path.rpartition(".")[2] == "maxpool" and isinstance(module, nn.MaxPool2d):
            pools.add("ceil" if module.ceil_mode and module.padding == 0 else "padded")

    def unbuilt(key: str) -> bool:
        return any(key.startswith(prefix) and fn(key[len(prefix):]) for prefix, fn in parts)

    return ModelDescription(first, classifiers, unbuilt, pools.pop() if len(pools) == 1 else None)


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


def _adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _read(checkpoint: Any, prefix: str | None) -> StateDict:
    if isinstance(checkpoint, (str, os.PathLike)):
        state_dict = load_state_dict_file(checkpoint)
    elif isinstance(checkpoint, Mapping):
        state_dict = unwrap_state_dict(checkpoint)
    else:
        raise TypeError(f"checkpoint must be a file path or a state dict, got {type(checkpoint).__name__}")
    if prefix:
        # mmengine adds the dot too: init_cfg prefix='backbone' means the keys under 'backbone.'
        prefix = prefix if prefix.endswith(".") else prefix + "."
        state_dict = strip_prefix(state_dict, prefix)
        if not state_dict:
            raise ValueError(f"no checkpoint key starts with prefix {prefix!r}")
    return state_dict


def _choose(state_dict: StateDict, model_state: Mapping[str, torch.Tensor], options: dict) -> str:
    """The dialect whose reading puts the most tensors into the model; on a tie, the one whose reading has more
    keys in resbone's grammar (fast-reid's `heads.*` over a dialect that leaves them unread), then the first."""
    best, best_score, readings = None, (0, 0), {}
    for name, dialect in DIALECTS.items():
        try:
            native = dialect.read(state_dict, **options)
        except (ValueError, TypeError, KeyError):
            continue
        aligned, _ = _align(native, model_state)
        fits = sum(1 for k, v in aligned.items() if k in model_state and v.shape == model_state[k].shape)
        score = (fits, sum(map(is_native_key, native)))
        readings[name] = (score, frozenset(aligned))
        if score > best_score:
            best, best_score = name, score
    check_unambiguous({name: keys for name, (score, keys) in readings.items() if score == best_score},
                      f"each put {best_score[0]} of its tensors into the model")
    if best == "resbone" and all(TORCHVISION_BODY_KEY.match(k) for k in state_dict):
        best = "torchvision"  # the same names; report the ecosystem they come from
    if best is None:
        raise ValueError(f"no dialect ({', '.join(DIALECTS)}) turns this checkpoint's names into the model's: "
                         f"checkpoint keys include {list(state_dict)[:5]}, model keys include "
                         f"{list(model_state)[:5]}")
    return best


def _classifier_of_another_size(key: str, value: torch.Tensor, target: torch.Tensor, report: LoadReport) -> None:
    # another number of classes; another input width (resnet18's fc into resnet50) is a mismatch
    if key.endswith("weight"):
        warnings.warn(f"dropped the checkpoint's classifier {key} {list(value.shape)}: the model's is "
                      f"{list(target.shape)} (another number of classes); it keeps its initial weights", stacklevel=3)
    report.dropped.append(key)
    report.initialized.append(key)


def _match(native: StateDict, model_state: Mapping[str, torch.Tensor], description: ModelDescription,
           report: LoadReport) -> StateDict:
    """Sort every checkpoint tensor into loaded / dropped / adapted / unexpected / mismatched."""
    to_load: StateDict = {}
    for key, value in native.items():
        target = model_state.get(key)
        classifier = any(key.startswith(c) for c in description.classifiers)
        if target is None:
            if key.endswith("num_batches_tracked") or classifier or description.unbuilt(key) \
                    or key.startswith("reid_head."):
                report.dropped.append(key)
            else:
                report.unexpected.append(key)
            continue
        if value.shape != target.shape:
            if key in description.first_convs and value.dim() == 4 and value.shape[0] == target.shape[0] \
                    and value.shape[2:] == target.shape[2:]:
                value = _adapt_input_conv(value, target.shape[1])
                report.adapted.append(f"{key} ({value.shape[1]} input channels)")
            elif classifier and value.shape[0] != target.shape[0]:
                _classifier_of_another_size(key, value, target, report)
                continue
            else:
                report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
                continue
        to_load[key] = value
    mismatched = {m[0] for m in report.mismatched}
    for key in model_state:
        if key in to_load or key in report.initialized or key in mismatched:
            continue
        if key.endswith("num_batches_tracked") or ".conv_offset." in key:
            report.initialized.append(key)
        else:
            report.missing.append(key)
    return to_load


def _warn_dropped_heads(report: LoadReport) -> None:
    heads = [k for k in report.dropped if k.startswith("reid_head.")]
    if heads:
        warnings.warn(f"dropped the checkpoint's re-identification head ({len(heads)} tensors: {_few(heads)}): "
                      "resbone builds the network without it", stacklevel=3)


def _check_hints(hints: Mapping[str, Any], description: ModelDescription, report: LoadReport) -> None:
    """What the checkpoint's ecosystem built differently from the model, where no key can show it."""
    wanted = hints.get("stem_pool")
    if wanted and description.stem_pool and wanted != description.stem_pool:
        note = (f"{report.dialect} builds the stem max-pool with stem_pool={wanted!r}, this model with "
                f"{description.stem_pool!r}: build it with stem_pool={wanted!r} for the same outputs")
        report.notes.append(note)
        warnings.warn(note, stacklevel=3)


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any], dialect: str = "auto",
                    strict: bool = True, *, prefix: str | None = None, allow_nonfinite: bool = False,
                    **options: Any) -> LoadReport:
    """Load `checkpoint` (a file path or a state dict, in any dialect) into `model`.

    dialect: 'auto' (the dialect that matches the model's names best) or a name in DIALECTS.
    strict: True raises one ValueError naming every missing, unexpected and shape-mismatched key and
    loads nothing; False loads what matches and returns the LoadReport with the problems listed.
    prefix: take only the checkpoint keys under this prefix, without it (mmdet init_cfg's `prefix`).
    allow_nonfinite: load NaN / Inf weights instead of refusing them.
    options: dialect options for the reading side (caffe2: eps)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if unknown := sorted(set(options) - _READ_OPTIONS):
        raise TypeError(f"unknown option(s) {unknown}; load_checkpoint takes {', '.join(sorted(_READ_OPTIONS))} "
                        "(the model is passed to the dialects that need it)")
    state_dict = _read(checkpoint, prefix)
    check_finite(state_dict, allow_nonfinite=allow_nonfinite)
    model_state = model.state_dict()
    options = {**options, "model": model}
    name = _choose(state_dict, model_state, options) if dialect == "auto" else resolve_dialect(dialect)
    if dialect != "auto":
        check_options({k: v for k, v in options.items() if k != "model"}, name)
    native, dropped = _align(DIALECTS[name].read(state_dict, **options), model_state)
    report = LoadReport(dialect=name, dropped=dropped)
    description = describe_model(model)
    to_load = _match(native, model_state, description, report)
    if strict and not report.ok:
        raise ValueError(f"checkpoint does not fit {type(model).__name__} (dialect {name}): {report.problems()}. "
                         "Pass strict=False to load what fits and get this report back")
    _warn_dropped_heads(report)
    _check_hints(DIALECTS[name].hints(state_dict), description, report)
    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report
