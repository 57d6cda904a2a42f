"""Which dialect is a state dict in? Each dialect renames the keys to resbone's; the one whose result
has the most keys in resbone's grammar wins (ties go to the earlier dialect in DIALECTS, so a plain
ResNet whose names torchvision, timm and mmdet share is reported as 'torchvision').

Reference tests: tests/convert/test_dialects.py::test_detect_*.
"""
from __future__ import annotations

from typing import Mapping

import torch

from resbone.convert.common import TORCHVISION_BODY_KEY, is_native_key
from resbone.convert.dialects import DIALECTS

__all__ = ["check_fits", "detect_dialect", "dialect_scores"]

_SHOWN = 5


def dialect_scores(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, list[str]]]:
    """dialect -> (number of keys it explains, a few keys it leaves unexplained)."""
    scores = {}
    for name, dialect in DIALECTS.items():
        try:
            native = dialect.to_native(state_dict)
        except (ValueError, TypeError, KeyError):
            scores[name] = (0, list(state_dict)[:_SHOWN])
            continue
        # `backbone.*` alone is a backbone saved with a prefix (mmdet, mmpretrain), not a native detector,
        # which always has `fpn.*` / `head.*` too.
        detector = any(k.startswith(("fpn.", "head.")) for k in native)
        unexplained = [k for k in native if not is_native_key(k) or (not detector and k.startswith("backbone."))]
        scores[name] = (len(native) - len(unexplained), unexplained[:_SHOWN])
    return scores


def detect_dialect(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The dialect `state_dict` is written in (a name in resbone.convert.DIALECTS).

    'torchvision' also stands for timm / mmdet checkpoints of plain ResNets (their names are identical),
    'resbone' for keys that are already native but not torchvision's (deep stem, a native detector).
    A state dict that no dialect explains at least half of gives a ValueError naming unexplained keys."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError(f"expected a non-empty state dict, got {type(state_dict).__name__}")
    scores = dialect_scores(state_dict)
    best = max(scores, key=lambda name: scores[name][0])  # max keeps the first of equal scores
    explained, unexplained = scores[best]
    if explained * 2 < len(state_dict):
        raise ValueError(f"no dialect explains this state dict ({len(state_dict)} keys; the best, {best!r}, "
                         f"explains {explained}); unexplained keys include {unexplained}; "
                         f"known dialects: {', '.join(DIALECTS)}")
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
