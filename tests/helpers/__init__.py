"""What the tests share: random norm statistics, toy checkpoints of every dialect (checkpoints.py), a tiny
detector and its config (detectors.py). Tests import from here, never from conftest or another test file."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomize_norms"]


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer non-trivial affine parameters and running statistics, so that a test
    comparing two models would notice a norm that was skipped, swapped or mis-loaded."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(m, name, None)
                if not isinstance(t, torch.Tensor) or t.dim() != 1 or isinstance(m, (nn.Conv2d, nn.Linear)):
                    continue
                if name == "running_var":
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
                elif name == "weight":
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    return model
