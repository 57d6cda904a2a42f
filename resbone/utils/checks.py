"""The checks and hints every layer of resbone's errors uses: an int that is not a bool, a value among the
allowed ones, and the close names an error suggests for a typo.

Each check raises a ValueError whose sentence names the argument, the bad value and what is allowed, and
returns the value. `close_matches` is difflib's ratio, as Python's own "did you mean" for attribute names.
Reference tests: tests/utils/test_checks.py, and the `test_invalid_arguments*` tests of tests/models.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence

__all__ = ["check_choice", "check_int", "close_matches", "did_you_mean", "is_int"]


def is_int(value: Any) -> bool:
    """An int that is not a bool (True is an int to Python, never a count or a size to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """An int in low..high (no upper bound when high is None)."""
    if not is_int(value) or value < low or (high is not None and value > high):
        allowed = f"an int in {low}..{high}" if high is not None else \
            ("a positive int" if low == 1 else f"an int >= {low}")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_choice(name: str, value: Any, allowed: Sequence[Any], hint: str = "") -> Any:
    """One of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}{hint}, got {value!r}")
    return value


def close_matches(name: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The choices closest to `name`, best first (difflib's similarity ratio >= cutoff, at most n)."""
    return difflib.get_close_matches(str(name), list(choices), n=n, cutoff=cutoff)


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.6) -> str:
    """'did you mean a, b?' naming the close choices, or '' when none is close."""
    close = close_matches(name, choices, n=n, cutoff=cutoff)
    return f"did you mean {', '.join(close)}?" if close else ""
