"""Global pooling with timm's pool types: 'avg', 'max', 'avgmax', 'catavgmax', and '' (no pooling).

Anchor: timm `layers/adaptive_avgmax_pool.py` `SelectAdaptivePool2d` (its meanings: 'avgmax' is
0.5 * (avg + max), 'catavgmax' concatenates avg and max on the channel axis and doubles the channels, ''
passes the map through unflattened) over torch's own adaptive pools; scriptable and fx-traceable.
Reference test: tests/layers/test_pool.py (equal to timm's SelectAdaptivePool2d for every type).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POOL_TYPES", "GlobalPool2d", "check_pool_type"]

POOL_TYPES = ("avg", "max", "avgmax", "catavgmax", "")


def check_pool_type(pool_type: object) -> str:
    if not isinstance(pool_type, str) or pool_type not in POOL_TYPES:
        raise ValueError(f"global_pool must be one of {POOL_TYPES} ('' = no pooling, the unpooled map), "
                         f"got {pool_type!r}")
    return pool_type


class GlobalPool2d(nn.Module):
    """(N, C, H, W) -> (N, C) pooled ((N, 2C) for 'catavgmax'); '' returns the map unchanged."""

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        self.pool_type = check_pool_type(pool_type)

    def feat_mult(self) -> int:
        """How many times the channels pooling returns (timm's name)."""
        return 2 if self.pool_type == "catavgmax" else 1

    def is_identity(self) -> bool:
        return self.pool_type == ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "":
            return x
        if self.pool_type == "avg":
            pooled = F.adaptive_avg_pool2d(x, 1)
        elif self.pool_type == "max":
            pooled = F.adaptive_max_pool2d(x, 1)
        elif self.pool_type == "avgmax":
            pooled = 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1))
        else:
            pooled = torch.cat((F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)), 1)
        return torch.flatten(pooled, 1)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}"
