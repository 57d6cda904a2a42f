"""GlobalPool2d against timm's SelectAdaptivePool2d (flatten=True, as timm's classifier builds it) for every pool
type, scripted too; its channel multiplier; bad pool types refused by name."""
from __future__ import annotations

import pytest
import torch
from timm.layers import SelectAdaptivePool2d

from resbone.layers.pool import POOL_TYPES, GlobalPool2d


@pytest.mark.parametrize("pool_type", POOL_TYPES)
def test_equals_timms_select_adaptive_pool(pool_type, rng):
    x = torch.randn(2, 8, 5, 7, generator=rng)
    ours, theirs = GlobalPool2d(pool_type), SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))
    expected = theirs(x)
    torch.testing.assert_close(ours(x), expected)
    torch.testing.assert_close(torch.jit.script(ours)(x), expected)
    assert ours.feat_mult() == theirs.feat_mult() and ours.is_identity() == theirs.is_identity()


@pytest.mark.parametrize("bad", ["fast", "AVG", None, 1])
def test_bad_pool_types_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="catavgmax") as info:
        GlobalPool2d(bad)
    assert repr(bad) in str(info.value)
