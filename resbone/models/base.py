"""What every resbone network shares: mmdetection's freezing and timm's self-description.

Freezing (`frozen_stages`, `norm_eval`) as mmdetection's backbones: requires_grad False AND eval mode (so BN
statistics stay put), re-applied by every `train()` call, which returns self (mmdetection's returns None).

Self-description as timm's `pretrained_cfg` (timm `models/resnet.py` `_cfg`): the first conv's and the
classifier's module paths, the input the weights expect (mean, std, input_size, interpolation, crop_pct) and
num_classes, so a checkpoint loader asks the model instead of knowing its internals; `unbuilt_key(key)` says
which checkpoint keys name parts a truncated backbone does not build (dropped, not "unexpected").
Reference tests: tests/models/test_resnet.py and test_mobilenetv2.py (a training step leaves frozen weights
unchanged; pretrained_cfg names modules that exist and match timm's).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from resbone.layers.norm import is_batch_norm

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FreezableBackbone", "pretrained_cfg"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_cfg(*, first_conv: str, classifier: str, num_classes: int, in_channels: int = 3,
                   **overrides: Any) -> dict[str, Any]:
    """timm's pretrained_cfg keys for an ImageNet-trained torchvision/timm network (timm `resnet._cfg`)."""
    return dict(num_classes=num_classes, input_size=(in_channels, 224, 224), crop_pct=0.875,
                interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv=first_conv,
                classifier=classifier, **overrides)


class FreezableBackbone(nn.Module):
    frozen_stages: int = -1
    norm_eval: bool = False
    pretrained_cfg: dict[str, Any]

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for pretrained_cfg."""
        return self.pretrained_cfg

    def unbuilt_key(self, key: str) -> bool:
        """True for a checkpoint key (relative to this model) that names a part this model does not build.

        A full network builds everything its checkpoint holds; backbones that stop early override this."""
        return False

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
