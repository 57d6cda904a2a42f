"""`convert_state_dict`: from any dialect to any other through resbone's names.

Reference tests: tests/convert/test_dialects.py (round trips), tests/convert/test_reid_dialects.py.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch

from resbone.convert.common import StateDict, check_finite
from resbone.convert.detect import check_fits, detect_dialect
from resbone.convert.dialects import DIALECTS, check_options, resolve_dialect
from resbone.convert.io import unwrap_state_dict

__all__ = ["convert_state_dict"]


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], src: str = "auto", dst: str = "resbone", *,
                       allow_nonfinite: bool = False, **options: Any) -> StateDict:
    """Rename `state_dict` from dialect `src` ('auto': detect it) to dialect `dst`, through resbone's names.

    Options go to the dialect that takes them: eps (caffe2), prefix / conv_bias (mmdet), strides (mmpretrain),
    num_batches_tracked (maskrcnn), model (mmdet: the resbone model whose plugins the keys name). NaN / Inf
    tensors are refused unless allow_nonfinite=True. A re-id head (`reid_head.*`) that `dst` cannot hold is
    dropped with a warning. Tensors are shared, not copied, unless a value must change (caffe2 BN folding,
    mmdet's 0-d scales)."""
    state_dict = unwrap_state_dict(state_dict)
    check_finite(state_dict, allow_nonfinite=allow_nonfinite)
    src = detect_dialect(state_dict, **options) if src == "auto" else resolve_dialect(src)
    dst = resolve_dialect(dst)
    check_options(options, src, dst)
    native = DIALECTS[src].read(state_dict, **options)
    check_fits(native, src)
    out = DIALECTS[dst].write(native, **options)
    heads = sorted(k for k in out if k.startswith("reid_head."))
    if heads and dst != "resbone":  # every other dialect renames the heads it can hold
        warnings.warn(f"{dst} has no re-identification head: dropped {len(heads)} tensors ({', '.join(heads[:3])}"
                      f"{', ...' if len(heads) > 3 else ''})", stacklevel=2)
        out = {k: v for k, v in out.items() if not k.startswith("reid_head.")}
    return out
