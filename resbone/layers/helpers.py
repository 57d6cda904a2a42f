"""Channel rounding shared by the layers and the models.

Anchor: timm `layers/helpers.py` `make_divisible` (one function, two rules chosen by round_limit):
round_limit=0.9 is the TF-slim / torchvision `_make_divisible` rule MobileNetV2's widths follow; round_limit=0
is timm's SEModule rule for reduced channels. Reference tests: tests/layers/test_attention.py (timm SEModule
channels) and tests/models/test_mobilenetv2.py (torchvision widths 1.0 and 0.5).
"""
from __future__ import annotations

__all__ = ["make_divisible"]


def make_divisible(value: float, divisor: int = 8, *, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """The nearest multiple of `divisor` (at least `min_value`, default divisor), bumped up one divisor when
    rounding lost more than 1 - round_limit of `value`."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value
