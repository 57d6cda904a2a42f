"""Fold every eval-mode BatchNorm / FrozenBatchNorm into the conv before it, for inference.

A ResNet block's conv -> norm pairs are its named siblings (conv1/bn1 ... conv3/bn3, the stem, the
shortcut's conv/norm in a Sequential); each pair becomes one conv with a bias, the norm an Identity.
The same holds for the FCOS detector's backbone (its FPN has no norms; the head's GroupNorm cannot be
folded: its statistics depend on the input). The arithmetic is torch's own `fuse_conv_bn_eval`.
Reference test: tests/deploy/test_fuse.py (fused outputs equal the unfused ones, and equal torchvision's
model with the same weights).
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["as_batch_norm", "fuse_conv_norm"]

_FUSABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv name, norm name) pairs among a module's direct children."""
    children = dict(module.named_children())
    pairs = []
    if isinstance(module, nn.Sequential):
        names = list(children)
        pairs += [(a, b) for a, b in zip(names, names[1:])]
    pairs += [(name, "bn" + name[len("conv"):]) for name in children
              if name.startswith("conv") and "bn" + name[len("conv"):] in children]
    return [(c, n) for c, n in pairs
            if type(children[c]) is nn.Conv2d and isinstance(children[n], _FUSABLE_NORMS)]


def as_batch_norm(norm: FrozenBatchNorm2d) -> nn.BatchNorm2d:
    """The same affine as an eval-mode nn.BatchNorm2d (the form torch's fusion code reads), on the frozen norm's
    device and in its dtype (a CPU float32 copy of a CUDA norm cannot be folded into the CUDA conv)."""
    bn = nn.BatchNorm2d(norm.weight.numel(), eps=norm.eps, device=norm.weight.device, dtype=norm.weight.dtype).eval()
    bn.load_state_dict({k: getattr(norm, k) for k in ("weight", "bias", "running_mean", "running_var")},
                       strict=False)
    return bn


def fuse_conv_norm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A copy of `model` (eval mode) whose conv + BN/FrozenBN pairs are single convs."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_conv_norm expects an nn.Module, got {type(model).__name__}")
    model = (model if inplace else copy.deepcopy(model)).eval()
    for module in list(model.modules()):
        for conv_name, norm_name in _pairs(module):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if isinstance(norm, FrozenBatchNorm2d):
                norm = as_batch_norm(norm)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
            setattr(module, norm_name, nn.Identity())
    return model
