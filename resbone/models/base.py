"""What every resbone backbone shares with mmdetection's: `frozen_stages` and `norm_eval`.

Freezing means requires_grad False AND eval mode (so BN statistics stay put), re-applied by every
`train()` call, which returns self (mmdetection's returns None). Reference tests:
tests/models/test_resnet.py and test_mobilenetv2.py (a training step leaves frozen weights unchanged).
"""
from __future__ import annotations

from torch import nn

from resbone.layers.norm import is_batch_norm

__all__ = ["FreezableBackbone"]


class FreezableBackbone(nn.Module):
    frozen_stages: int = -1
    norm_eval: bool = False

    def frozen_modules(self) -> list[nn.Module]:
        """The modules that `frozen_stages` freezes (the stem and the first stages)."""
        raise NotImplementedError  # each backbone knows its own stages

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> "FreezableBackbone":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if is_batch_norm(m):
                    m.eval()
        return self
