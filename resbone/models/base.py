"""What every resbone network shares: its two forwards, timm's model API, and mmdetection's freezing.

The forward, in one place: a network built with num_classes > 0 is a classifier, `forward(x)` gives logits
(N, num_classes) = forward_head(forward_features(x)), as torchvision's and timm's; one built with
num_classes None/0 is a detection backbone, `forward(x)` gives a tuple with the map of each `out_indices`
stage (a list when built by `create_model(..., features_only=True)`, as timm's), as mmdetection's.
In both modes `forward_features(x)` is the last stage's map (a tensor) and `forward_head(x, pre_logits)`
pools it (and applies the classifier), as timm's.

timm's model API (timm `models/resnet.py`, `_features.py`): `feature_info` (a list of dicts with ours
`channels`/`stride`/`module` and timm's `num_chs`/`reduction`/`module`, answering `channels()`,
`reduction()`, `module_name()`), `get_classifier()`, `reset_classifier(n)`, `set_grad_checkpointing()`,
and `pretrained_cfg` / `default_cfg` (timm `resnet._cfg`): the first conv's and the classifier's module
paths and the input the weights expect, so a checkpoint loader asks the model instead of knowing its
internals; `unbuilt_key(key)` names checkpoint keys a truncated backbone does not build.

Freezing as mmdetection's backbones: `frozen_stages` sets requires_grad False AND eval mode (BN statistics
stay put), `norm_eval` keeps every BatchNorm in eval mode; every `train()` re-applies both and returns self
(mmdetection's returns None).
Reference tests: tests/models/test_timm_api.py (timm FeatureListNet, torchvision create_feature_extractor,
timm's model API on timm's own models), test_resnet.py and test_mobilenetv2.py (freezing).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from resbone.layers.norm import is_batch_norm

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FeatureInfo", "FreezableBackbone", "check_input", "pretrained_cfg"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_cfg(*, first_conv: str, classifier: str, num_classes: int, in_channels: int = 3,
                   **overrides: Any) -> dict[str, Any]:
    """timm's pretrained_cfg keys for an ImageNet-trained torchvision/timm network (timm `resnet._cfg`)."""
    return dict(num_classes=num_classes, input_size=(in_channels, 224, 224), crop_pct=0.875,
                interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv=first_conv,
                classifier=classifier, **overrides)


class FeatureInfo(list):
    """One dict per returned map with resbone's keys (channels, stride, module) and timm's (num_chs,
    reduction, module); channels(), reduction(), module_name() answer as timm's FeatureInfo."""

    def __init__(self, maps: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(dict(m, num_chs=m["channels"], reduction=m["stride"]) for m in maps)

    @property
    def out_indices(self) -> tuple[int, ...]:
        return tuple(range(len(self)))

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [info[key] for info in self]
        if isinstance(idx, (list, tuple)):
            return [self[i][key] for i in idx]
        return self[idx][key]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)


def check_input(x: Any, in_channels: int, network: str) -> None:
    """A clear error for what would otherwise fail deep inside conv2d (wrapped for torch.fx: not traced)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{network} expects a torch.Tensor of shape (N, {in_channels}, H, W), got {type(x).__name__}")
    if not x.is_floating_point():  # uint8 images otherwise fail inside conv2d ("expected scalar type")
        raise TypeError(f"{network} expects a floating-point tensor, got {x.dtype} (an image batch? convert it "
                        f"with x.float() and normalise it first)")
    if x.dim() != 4:
        raise ValueError(f"{network} expects a 4-D batch (N, C, H, W), got a {x.dim()}-D tensor of shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{network} expects a (N, {in_channels}, H, W) batch: it was built for in_channels="
                         f"{in_channels} but got {x.shape[1]} channels (input shape {tuple(x.shape)})")


torch.fx.wrap("check_input")  # a leaf for symbolic tracing (create_feature_extractor): checks real tensors only


class FreezableBackbone(nn.Module):
    """The base of ResNet and MobileNetV2. A subclass builds its stages and sets in_channels, num_classes,
    out_indices, feature_info, pretrained_cfg, and implements `_forward_stages` and `frozen_modules`."""

    frozen_stages: int = -1
    norm_eval: bool = False
    features_only: bool = False  # set by create_model(features_only=True): the backbone returns a list
    in_channels: int
    num_classes: int
    is_classifier: bool
    out_indices: tuple[int, ...]
    feature_info: FeatureInfo
    pretrained_cfg: dict[str, Any]
    num_features: int  # channels of the last stage's map (timm's name)
    head: str  # the module forward_head applies after pooling: 'fc', or 'classifier' (dropout + Linear)

    # ---- forward -------------------------------------------------------------------------------------
    def _forward_stages(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """The maps of stages `indices` (increasing), running the stem and the stages up to the last one."""
        raise NotImplementedError  # each network knows its own stages

    @property
    def num_built_stages(self) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        """Classifier: logits (N, num_classes). Backbone: the out_indices maps, a tuple (a list if features_only)."""
        if self.is_classifier:
            return self.forward_head(self.forward_features(x))
        check_input(x, self.in_channels, type(self).__name__)
        maps = self._forward_stages(x, self.out_indices)
        return list(maps) if self.features_only else tuple(maps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (N, C, H, W), before pooling."""
        check_input(x, self.in_channels, type(self).__name__)
        return self._forward_stages(x, (self.num_built_stages - 1,))[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier (unless pre_logits, or the network has none)."""
        pooled = self.avgpool(x) if "avgpool" in self._modules else F.adaptive_avg_pool2d(x, 1)
        pooled = torch.flatten(pooled, 1)
        return pooled if pre_logits or not self.is_classifier else getattr(self, self.head)(pooled)

    # ---- timm's model API ----------------------------------------------------------------------------
    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for pretrained_cfg."""
        return self.pretrained_cfg

    def unbuilt_key(self, key: str) -> bool:
        """True for a checkpoint key (relative to this model) that names a part this model does not build.

        A full network builds everything its checkpoint holds; backbones that stop early override this."""
        return False

    def get_classifier(self) -> nn.Module:
        """The final Linear (pretrained_cfg['classifier']); nn.Identity() for a backbone."""
        return self.get_submodule(self.pretrained_cfg["classifier"]) if self.is_classifier else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh Linear for num_classes > 0; num_classes=0 leaves pooled features (timm's reset_classifier(0)).

        global_pool: None or 'avg' (the only pooling resbone's networks have)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool={global_pool!r} is not supported; resbone's networks pool by 'avg' "
                             f"(None keeps it)")
        if not self.is_classifier:
            raise ValueError(f"{type(self).__name__} was built as a backbone (num_classes=None), so it has no "
                             f"classifier to reset; build it with num_classes={num_classes} instead")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be 0 (no classifier) or a positive int, got {num_classes!r}")
        parent, _, name = self.pretrained_cfg["classifier"].rpartition(".")
        new = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        setattr(self.get_submodule(parent) if parent else self, name, new)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every block's activations in the backward pass (mmdetection's with_cp) to save memory."""
        for module in self.modules():
            if hasattr(module, "with_cp"):
                module.with_cp = bool(enable)

    # ---- freezing ------------------------------------------------------------------------------------
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
