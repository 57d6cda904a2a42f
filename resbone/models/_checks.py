"""The argument checks every resbone network shares (validated once, at the public boundary).

Each check raises a ValueError / TypeError / KeyError whose sentence names the argument, the bad value and
what is allowed, and returns the value in the form the constructor keeps; check_int and check_choice are
resbone.utils.checks', shared with every other layer. Reference tests: the
`test_invalid_arguments*` / `test_bad_arguments*` tests in tests/models/test_resnet.py and test_mobilenetv2.py.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from resbone.utils.checks import check_choice, check_int, is_int

__all__ = ["check_choice", "check_frozen_stages", "check_int", "check_num_classes", "check_out_indices",
           "check_positive_number", "per_stage", "plugins_per_stage"]


def check_positive_number(name: str, value: Any, hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number{hint}, got {value!r}")
    return value


def check_num_classes(num_classes: Any) -> int:
    """None or 0: a backbone; a positive int: a classifier with that many classes."""
    if num_classes is not None and (not is_int(num_classes) or num_classes < 0):
        raise ValueError(f"num_classes must be None, 0 (backbone) or a positive int, got {num_classes!r}")
    return num_classes or 0


def check_frozen_stages(frozen_stages: Any, num_stages: int) -> int:
    if not is_int(frozen_stages) or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages must be an int from -1 (nothing frozen) to num_stages={num_stages}, "
                         f"got {frozen_stages!r}")
    return frozen_stages


def check_out_indices(out_indices: Any, num_stages: int, hint: str) -> tuple[int, ...]:
    """Distinct, increasing stage indices in 0..num_stages - 1; `hint` says what the indices mean."""
    if is_int(out_indices) or not isinstance(out_indices, Sequence) or isinstance(out_indices, (str, bytes)):
        raise TypeError(f"out_indices must be a sequence of stage indices in 0..{num_stages - 1}, "
                        f"got {out_indices!r}")
    out_indices = tuple(out_indices)
    if not out_indices or any(not is_int(i) or not 0 <= i < num_stages for i in out_indices) \
            or list(out_indices) != sorted(set(out_indices)):
        raise ValueError(f"out_indices must be distinct, increasing stage indices in 0..{num_stages - 1} "
                         f"({hint}), got {out_indices!r}")
    return out_indices


def per_stage(name: str, value: Any, num_stages: int, *, positive_ints: bool = False) -> tuple[Any, ...]:
    """A per-stage sequence: one entry per stage (or the 4-entry default, cut to num_stages)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence with one entry per stage, got {value!r}")
    if len(value) not in (num_stages, 4) or len(value) < num_stages:
        raise ValueError(f"{name} must have {num_stages} entries (one per stage, num_stages={num_stages}), "
                         f"got {len(value)}: {tuple(value)!r}")
    value = tuple(value[:num_stages])
    if positive_ints and any(not is_int(v) or v < 1 for v in value):
        raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return value


def plugins_per_stage(plugins: Sequence[Mapping[str, Any]] | None, num_stages: int,
                      positions: Sequence[str]) -> list[list[dict[str, Any]]]:
    """mmdetection's plugin list, split per stage: [[dict(cfg, position), ...] for each stage]."""
    chosen: list[list[dict[str, Any]]] = [[] for _ in range(num_stages)]
    for plugin in plugins or ():
        if not isinstance(plugin, Mapping) or "cfg" not in plugin or "position" not in plugin:
            raise ValueError(f"each plugin must be dict(cfg=dict(type=...), position=..., stages=...), got {plugin!r}")
        check_choice("plugin position", plugin["position"], positions)
        unknown = set(plugin) - {"cfg", "position", "stages"}
        if unknown:
            raise KeyError(f"plugin {plugin!r} has unknown keys {sorted(unknown)}; allowed: cfg, position, stages")
        stages = plugin.get("stages")
        stages = (True,) * num_stages if stages is None else per_stage("plugin stages", stages, num_stages)
        for stage, wanted in enumerate(stages):
            if wanted:
                chosen[stage].append(dict(cfg=plugin["cfg"], position=plugin["position"]))
    return chosen
