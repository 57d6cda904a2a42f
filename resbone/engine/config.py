"""Every task's configuration, yacs-style: a task's declared defaults, YAML files and `KEY VALUE` overrides,
checked; and the checks of the engine's own keys (resbone.engine.defaults).

Anchor: tianzhi0549/FCOS `fcos_core/config/` (yacs; itself maskrcnn-benchmark's) and detectron2's
`config/config.py` (a CfgNode subclass whose merges explain themselves). Each task declares its keys once
(resbone.detection.defaults, resbone.classification.defaults); this module merges files and overrides into
such a tree. Unlike yacs, an unknown key or a value of the wrong type raises an error that names the key,
the file and what is allowed, also through `cfg.merge_from_list` / `cfg.merge_from_file`.
Proven by tests/detection/test_config.py and tests/classification/test_task.py.
"""
from __future__ import annotations

import ast
import math
import os
import warnings
from typing import Any, Callable, Iterable, Sequence

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from resbone.engine.solver import LR_SCHEDULERS, OPTIMIZERS
from resbone.utils.checks import close_matches, is_int
from resbone.weights import has_scheme, locate

__all__ = ["AMP_DTYPES", "CfgNode", "ENGINE_CHOICES", "ENGINE_RANGES", "check_cfg", "check_values", "check_weight",
           "load_config", "merge_from_file", "merge_from_list", "read_yaml"]


class CfgNode(_YacsCfgNode):
    """yacs's CfgNode whose merges are resbone's: a KeyError that suggests the closest keys for an unknown
    one (yacs: an AssertionError), a TypeError naming the key, the file and the expected type."""

    def merge_from_file(self, cfg_filename: str) -> None:
        self._check_mutable()
        merge_from_file(self, cfg_filename)

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        self._check_mutable()
        merge_from_list(self, cfg_list)

    def merge_from_other_cfg(self, cfg_other: _YacsCfgNode) -> None:
        self._check_mutable()
        _merge(self, cfg_other, "", "")

    def _check_mutable(self) -> None:
        if self.is_frozen():
            raise AttributeError("this config is frozen (load_cfg freezes it); merge into cfg.clone() after "
                                 "cfg.defrost(), or pass the overrides to load_cfg")


# ---- merging with checks ------------------------------------------------------------------------------
def _decode(value: Any) -> Any:
    """YAML / command-line text -> Python value, as yacs does: '(800,)' is a tuple, 'R-50' stays a str."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            tuple: "a tuple/list", list: "a tuple/list"}.get(type(value), type(value).__name__)


def _coerce(new: Any, old: Any, key: str, where: str) -> Any:
    """Check that `new` may replace the default `old` (yacs's rules, with an error that explains)."""
    if old is None or type(new) is type(old):
        return new
    if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return type(old)(new)
    if isinstance(old, float) and is_int(new):
        return float(new)
    if isinstance(old, (tuple, list)) and not isinstance(new, (tuple, list, dict)) and new is not None:
        # FCOS writes `MIN_SIZE_TRAIN: 800` and `(800,)` interchangeably in its forks.
        element = type(old[0]) if len(old) else type(new)
        if element is type(new) or (element is float and type(new) is int):
            return type(old)([element(new)])
    raise TypeError(f"config key {key}{where} must be {_type_name(old)} like {old!r}, got {new!r} "
                    f"({_type_name(new)})")


def _merge(dst: _YacsCfgNode, src: dict, prefix: str, where: str) -> None:
    for name, raw in src.items():
        key = f"{prefix}{name}"
        if name not in dst:
            close = close_matches(name, dst.keys())
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise KeyError(f"unknown config key {key}{where}{hint} (keys under "
                           f"{prefix.rstrip('.') or 'the root'}: {', '.join(sorted(dst.keys()))})")
        value = _decode(raw)
        if isinstance(dst[name], _YacsCfgNode):
            if not isinstance(value, dict):
                raise TypeError(f"config key {key}{where} is a section with keys "
                                f"{', '.join(sorted(dst[name].keys()))}; got the value {raw!r}")
            _merge(dst[name], value, key + ".", where)
        elif isinstance(value, dict):
            raise TypeError(f"config key {key}{where} is a value like {dst[name]!r}, not a section")
        else:
            dst[name] = _coerce(value, dst[name], key, where)


def read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """The mapping a YAML file holds, its `_BASE_` files merged under it."""
    path = os.path.abspath(path)
    if path in seen:
        raise ValueError(f"config file {path} includes itself through _BASE_ ({' -> '.join(seen)})")
    if not os.path.isfile(path):
        raise ValueError(f"config file {path} does not exist")
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise TypeError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    # detectron2-style inheritance: the base file first, then this file's keys over it.
    merged = read_yaml(os.path.join(os.path.dirname(path), base), seen + (path,))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = value


def merge_from_file(cfg: _YacsCfgNode, path: str) -> _YacsCfgNode:
    """Merge a YAML file (FCOS's or resbone's; `_BASE_: other.yaml` inherits) into cfg."""
    _merge(cfg, read_yaml(path), "", f" (in {path})")
    return cfg


def merge_from_list(cfg: _YacsCfgNode, opts: Sequence[str]) -> _YacsCfgNode:
    """Merge `KEY VALUE` pairs (`SOLVER.MAX_ITER 200 MODEL.WEIGHT ''`), values parsed like YAML's."""
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"overrides come as KEY VALUE pairs; got an odd number of items: {opts}")
    for key, value in zip(opts[0::2], opts[1::2]):
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise ValueError(f"override key {key!r} is not a config key like SOLVER.MAX_ITER")
        *parents, last = key.split(".")
        tree: dict = {}
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        _merge(cfg, tree, "", " (on the command line)")
    return cfg


def load_config(defaults: _YacsCfgNode, path: str | None = None, opts: Iterable[str] = (), *,
                check: Callable[[CfgNode], None] | None = None, freeze: bool = True) -> CfgNode:
    """A task's `defaults` + the YAML file + the overrides, checked (the engine's keys, then `check`) and (by
    default) frozen."""
    cfg = CfgNode(defaults)
    if path:
        merge_from_file(cfg, path)
    merge_from_list(cfg, list(opts))
    check_cfg(cfg)
    if check is not None:
        check(cfg)
    if freeze:
        cfg.freeze()
    return cfg


AMP_DTYPES = ("auto", "bfloat16", "float16")  # SOLVER.AMP_DTYPE; 'auto' = float16 on CUDA, bfloat16 on the CPU
ENGINE_CHOICES = {
    "SOLVER.WARMUP_METHOD": ("constant", "linear"),
    "SOLVER.AMP_DTYPE": AMP_DTYPES,
    "SOLVER.OPTIMIZER": OPTIMIZERS, "SOLVER.LR_SCHEDULER_NAME": LR_SCHEDULERS,
}
_INF = math.inf
# key -> (low, high, low allowed, high allowed): the numbers a run can use.
ENGINE_RANGES = {
    "SOLVER.MAX_ITER": (0, _INF, False, False), "SOLVER.IMS_PER_BATCH": (0, _INF, False, False),
    "SOLVER.CHECKPOINT_PERIOD": (0, _INF, False, False), "SOLVER.LOG_PERIOD": (0, _INF, False, False),
    "TEST.IMS_PER_BATCH": (0, _INF, False, False), "TEST.EVAL_PERIOD": (0, _INF, True, False),
    "SOLVER.BASE_LR": (0, _INF, False, False), "SOLVER.MOMENTUM": (0, 1, True, False),
    "SOLVER.WEIGHT_DECAY": (0, _INF, True, False), "SOLVER.WEIGHT_DECAY_BIAS": (0, _INF, True, False),
    "SOLVER.BIAS_LR_FACTOR": (0, _INF, True, False), "SOLVER.DCONV_OFFSETS_LR_FACTOR": (0, _INF, True, False),
    # GAMMA multiplies the lr at each step: a decay (FCOS: 0.1); above 1 is a typo more often than a plan
    "SOLVER.GAMMA": (0, 1, False, True), "SOLVER.WARMUP_FACTOR": (0, 1, False, True),
    "SOLVER.WARMUP_ITERS": (0, _INF, True, False), "SOLVER.CLIP_GRAD_NORM": (0, _INF, True, False),
    "SOLVER.BASE_LR_END": (0, _INF, True, False), "MODEL_EMA.DECAY": (0, 1, True, False),
    "DATALOADER.NUM_WORKERS": (0, _INF, True, False),
}


def _value(cfg: CfgNode, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _range_text(low: float, high: float, low_allowed: bool, high_allowed: bool) -> str:
    if high == _INF:
        return f">= {low}" if low_allowed else "positive" if low == 0 else f"> {low}"
    return f"{'>=' if low_allowed else '>'} {low} and {'<=' if high_allowed else '<'} {high}"


def check_cfg(cfg: CfgNode) -> None:
    """The engine's keys whose allowed choices or ranges are known, each error naming its key."""
    check_values(cfg, ENGINE_CHOICES, ENGINE_RANGES)
    _check_steps(cfg.SOLVER)


def check_values(cfg: CfgNode, choices: dict, ranges: dict) -> None:
    """Each key of `choices` holds one of its values; each key of `ranges` (low, high, low allowed, high
    allowed) a finite number in its range."""
    for key, allowed in choices.items():
        if _value(cfg, key) not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, allowed))}, got {_value(cfg, key)!r}")
    for key, (low, high, low_allowed, high_allowed) in ranges.items():
        value = _value(cfg, key)
        above = value >= low if low_allowed else value > low
        below = value <= high if high_allowed else value < high
        if isinstance(value, bool) or not (above and below and math.isfinite(value)):
            raise ValueError(f"{key} must be {_range_text(low, high, low_allowed, high_allowed)}, got {value!r}")


def _check_steps(solver: CfgNode) -> None:
    steps = list(solver.STEPS)
    if any(not is_int(s) or s <= 0 for s in steps):
        raise ValueError(f"SOLVER.STEPS must be positive iteration numbers (FCOS 1x: (60000, 80000)), got "
                         f"{tuple(steps)}")
    if steps != sorted(steps):
        raise ValueError(f"SOLVER.STEPS must be increasing, got {tuple(steps)}")
    late = [s for s in steps if s >= solver.MAX_ITER]
    if late:
        # detectron2 warns and drops them too: a run shortened with SOLVER.MAX_ITER on the command line is common
        warnings.warn(f"SOLVER.STEPS {tuple(late)} are not below SOLVER.MAX_ITER {solver.MAX_ITER}: the learning "
                      f"rate never decays there", stacklevel=5)


def check_weight(weight: str) -> str:
    """MODEL.WEIGHT must be "", a local file or an address resbone.weights knows (catalog://, https://, ...)."""
    if not weight:
        return weight
    if has_scheme(weight):  # FCOS's catalog:// names and URLs: checked here, fetched when loaded
        locate(weight)
        return weight
    if os.path.isdir(weight):
        raise ValueError(f"MODEL.WEIGHT {weight!r} is a directory; pass the path of a checkpoint file in it")
    if not os.path.isfile(weight):
        raise ValueError(f"MODEL.WEIGHT {weight!r} does not exist; pass the path of a local checkpoint file")
    return weight
