"""Which dialect is a state dict in? Each dialect renames the keys to resbone's; the one whose result has the
most keys in resbone's grammar wins. Dialects that tie and read the keys the same way (a plain ResNet's names
are torchvision's, timm's and mmdet's) are one answer, the first in DIALECTS ('torchvision' for those);
dialects that tie but read the keys differently make the state dict ambiguous: a ValueError names them.

Reference tests: tests/convert/test_dialects.py::test_detect_*, tests/convert/test_reid_dialects.py.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from resbone.convert.common import TORCHVISION_BODY_KEY, ModelRequired, is_native_key
from resbone.convert.dialects import DIALECTS

__all__ = ["check_fits", "check_unambiguous", "detect_dialect", "dialect_scores"]

_SHOWN = 5


def _reading(name: str, state_dict: Mapping[str, torch.Tensor], options: Mapping[str, Any]):
    """(keys explained, a few unexplained keys, the native key set or None when the dialect needs the model)."""
    try:
        native = DIALECTS[name].read(state_dict, **options)
    except ModelRequired:
        return len(state_dict), [], None  # everything but the plugins was explained before it asked
    except (ValueError, TypeError, KeyError):
        return 0, list(state_dict)[:_SHOWN], frozenset()
    # `backbone.*` alone is a backbone saved with a prefix (mmdet, mmpretrain), not a native detector, which
    # always has `fpn.*` / `head.*` too, and holds its backbone under `backbone.`.
    detector = any(k.startswith(("fpn.", "head.")) for k in native)
    unexplained = [k for k in native if not is_native_key(k)
                   or detector != k.startswith(("backbone.", "fpn.", "head."))]
    return len(native) - len(unexplained), unexplained[:_SHOWN], frozenset(native)


def dialect_scores(state_dict: Mapping[str, torch.Tensor], **options: Any) -> dict[str, tuple[int, list[str]]]:
    """dialect -> (number of keys it explains, a few keys it leaves unexplained)."""
    return {name: _reading(name, state_dict, options)[:2] for name in DIALECTS}


def check_unambiguous(best: Mapping[str, Any], how: str) -> None:
    """`best`: the equally good dialects -> the native key set each reads (None: it needs the model). Dialects
    that read the keys the same way are one answer; two different readings are an error naming them."""
    groups: dict[Any, list[str]] = {}
    for name, keys in best.items():
        groups.setdefault(name if keys is None else keys, []).append(name)
    if len(groups) > 1:
        candidates = " or ".join(repr(" = ".join(names)) for names in groups.values())
        raise ValueError(f"ambiguous state dict: {candidates} {how} but name its tensors differently; say which it "
                         "is (load_checkpoint(dialect=...), convert_state_dict(src=...), resbone convert --from ...)")


def detect_dialect(state_dict: Mapping[str, torch.Tensor], **options: Any) -> str:
    """The dialect `state_dict` is written in (a name in resbone.convert.DIALECTS).

    'torchvision' also stands for timm / mmdet checkpoints of plain ResNets (their names are identical),
    'resbone' for keys that are already native but not torchvision's (deep stem, a native detector).
    A state dict that no dialect explains at least half of, or that two dialects explain equally well but
    read differently, gives a ValueError naming the keys or the candidates. `options`: reading options
    (model=, for mmdet's plugins)."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError(f"expected a non-empty state dict, got {type(state_dict).__name__}")
    readings = {name: _reading(name, state_dict, options) for name in DIALECTS}
    best = max(readings, key=lambda name: readings[name][0])  # max keeps the first of equal scores
    explained, unexplained, _ = readings[best]
    if explained * 2 < len(state_dict):
        raise ValueError(f"no dialect explains this state dict ({len(state_dict)} keys; the best, {best!r}, "
                         f"explains {explained}); unexplained keys include {unexplained}; "
                         f"known dialects: {', '.join(DIALECTS)}")
    check_unambiguous({name: keys for name, (score, _, keys) in readings.items() if score == explained},
                      f"each explain {explained} of its {len(state_dict)} keys")
    if best == "resbone" and all(TORCHVISION_BODY_KEY.match(k) for k in state_dict):
        return "torchvision"
    return best


def check_fits(native: Mapping[str, torch.Tensor], dialect: str, *, source: str = "the state dict") -> None:
    """Refuse a dialect named by the user that does not explain `source`: `native` (its to_native result)
    must have at least half its keys in resbone's grammar, the bar detect_dialect sets. Without this a
    wrong --from passes the keys through unrenamed and the output is written under the wrong names."""
    unexplained = [k for k in native if not is_native_key(k)]
    if native and len(unexplained) * 2 > len(native):
        try:
            hint = f"; the keys look like {detect_dialect(native)!r}"
        except ValueError:
            hint = ""
        raise ValueError(f"{source} is not in the {dialect!r} dialect: {len(unexplained)} of its {len(native)} keys "
                         f"are not {dialect} names, e.g. {unexplained[:_SHOWN]}{hint}; "
                         f"leave the dialect out ('auto') to detect it")
