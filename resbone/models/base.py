"""What every resbone network shares: its forwards, timm's model API, and mmdetection's freezing.

Three ways to build one network (the user guide's timm page, under docs/, tables both numberings):
- `num_classes` an int (torchvision's / timm's network): `forward(x)` = forward_head(forward_features(x)):
  logits (N, num_classes), or with num_classes=0 the pooled features (N, head_hidden_size) (timm's), or with
  global_pool='' too the unpooled map; `feature_info` lists every feature point in timm's numbering.
- `num_classes=None` (mmdetection's backbone): `forward(x)` is a tuple of the `out_indices` maps, numbered
  as mmdetection numbers its stages; `feature_info` describes those maps.
- `create_model(name, features_only=True, out_indices=)` (timm's feature extractor): a list of the maps of
  `out_indices` in timm's numbering (all feature points by default); the network stops after the last one.

The two numberings (timm's: features_only / feature_info with a head / forward_intermediates / FeatureListNet;
mmdetection's: ResNet(out_indices=) / MobileNetV2(out_indices=) with num_classes=None, build_backbone):

    map (stride)                 timm  mmdet      map (stride, channels)          timm  mmdet
    ResNet stem `relu`/`stem` (2)   0     -       MobileNetV2 features.1 (2, 16)     0     0
    layer1 (4)                      1     0       features.3 (4, 24)                 1     1
    layer2 (8)                      2     1       features.6 (8, 32)                 2     2
    layer3 (16)                     3     2       features.10 (16, 64)               -     3
    layer4 (32)                     4     3       features.13 (16, 96)               3     4
                                                  features.16 (32, 160)              -     5
                                                  features.17 (32, 320)              4     6
                                                  features.18 (32, 1280; conv_head)  -     7

`forward_features(x)` is the last map before pooling and `forward_head(x, pre_logits)` pools it (and
classifies), as timm's. Inside, each network numbers its `taps` (every map either numbering can name);
`timm_taps` and `mmdet_taps` map each numbering onto them.

timm's model API (timm `models/resnet.py`, `_features.py`, `_manipulate.py`): `feature_info` (dicts with ours
`channels`/`stride`/`module` and timm's `num_chs`/`reduction`/`module`, answering channels() / reduction() /
module_name()), `forward_intermediates`, `prune_intermediate_layers`, `get_classifier`, `reset_classifier(n,
global_pool)`, `head_hidden_size`, `set_grad_checkpointing`, `pretrained_cfg` / `default_cfg` (timm `_cfg`:
first conv, classifier, input size, pool_size), `in_chans`; `forward` scripts and traces (TorchScript) in
every mode (a scripted backbone returns a list). `unbuilt_key(key)` names checkpoint keys a truncated network
does not build.

Freezing as mmdetection's backbones: `frozen_stages` sets requires_grad False AND eval mode (BN statistics
stay put), `norm_eval` keeps every BatchNorm in eval mode; every `train()` re-applies both and returns self.
In training mode, one image so small that a BatchNorm would normalise a 1x1 map (torch: 'Expected more than 1
value per channel') is a ValueError naming its size and the minimum, as the FCOS detector's; eval mode skips it.
Reference tests: tests/models/test_timm_api.py, test_timm_numbering.py (timm's resnet50 / mobilenetv2_100,
FeatureListNet), tests/models/test_torchscript.py, tests/timm_suite/test_timm_model_tests.py (timm's own tests),
tests/models/test_small_input.py (the minimum, where torch itself fails).
"""
# no `from __future__ import annotations` here: torch.fx copies forward's annotations into the code of the graphs
# it traces, which TorchScript then compiles; strings there ('torch.Tensor') do not compile
from typing import Any, Iterable, List, Sequence, Tuple, Union

import torch
import torch.fx
from torch import nn

from resbone.layers.norm import is_batch_norm
from resbone.layers.pool import GlobalPool2d, check_pool_type
from resbone.utils.checks import is_int

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FeatureInfo", "FreezableBackbone", "check_input", "pretrained_cfg",
           "take_indices"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


def pretrained_cfg(*, first_conv: str, classifier: str, num_classes: int, in_channels: int = 3, stride: int = 32,
                   **overrides: Any) -> dict[str, Any]:
    """timm's pretrained_cfg keys for an ImageNet-trained torchvision/timm network (timm `resnet._cfg`)."""
    pool = -(-INPUT_SIZE // stride)  # the last map's size at the input size (ceil: padded convs round up)
    return dict(num_classes=num_classes, input_size=(in_channels, INPUT_SIZE, INPUT_SIZE), pool_size=(pool, pool),
                fixed_input_size=False, crop_pct=0.875, crop_mode="center", interpolation="bilinear",
                mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv=first_conv, classifier=classifier, **overrides)


def take_indices(num_points: int, indices: int | Sequence[int] | None, what: str = "indices") -> list[int]:
    """timm's `feature_take_indices`: None = every point, an int n = the last n, a sequence = those points
    (negative ones count from the end), as absolute indices in increasing order."""
    if indices is None:
        return list(range(num_points))
    if is_int(indices):
        if not 0 < indices <= num_points:
            raise ValueError(f"{what}={indices} asks for the last {indices} maps; allowed: 1..{num_points}")
        return list(range(num_points - indices, num_points))
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
        raise TypeError(f"{what} must be None, an int (the last n maps) or a sequence of feature indices in "
                        f"0..{num_points - 1} (timm's numbering), got {indices!r}")
    taken = []
    for i in indices:
        if not is_int(i) or not -num_points <= i < num_points:
            raise ValueError(f"{what}={tuple(indices)!r}: {i!r} is not a feature index; allowed: 0..{num_points - 1} "
                             f"(timm's numbering) or -{num_points}..-1")
        taken.append(i % num_points)
    if taken != sorted(set(taken)):
        raise ValueError(f"{what}={tuple(indices)!r} must name distinct maps in increasing order")
    return taken


class FeatureInfo(list):
    """One dict per map with resbone's keys (channels, stride, module) and timm's (num_chs, reduction,
    module); channels(), reduction(), module_name() and out_indices answer as timm's FeatureInfo."""

    def __init__(self, maps: Iterable[dict[str, Any]] = (), out_indices: Sequence[int] | None = None) -> None:
        super().__init__(dict(m, num_chs=m["channels"], reduction=m["stride"]) for m in maps)
        self._out_indices = None if out_indices is None else tuple(out_indices)

    @property
    def out_indices(self) -> tuple[int, ...]:
        """The index of each map in the numbering of the API that built the network."""
        return tuple(range(len(self))) if self._out_indices is None else self._out_indices

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


def check_input(x: torch.Tensor, in_channels: int, network: str, norm_stride: int = 0) -> None:
    """A clear error for what would otherwise fail deep inside conv2d or batch_norm (wrapped for torch.fx: not
    traced; skipped by TorchScript, which types its input already, so that fx-traced then scripted graphs
    compile). `norm_stride`: the stride of the deepest map a BatchNorm in training mode normalises (0: none)."""
    if not torch.jit.is_scripting():
        _check_input(x, in_channels, network)
        if norm_stride and x.shape[0] == 1 and x.shape[-2] <= norm_stride and x.shape[-1] <= norm_stride:
            # padded convs round up: the map at stride s is ceil(H / s) x ceil(W / s), 1x1 up to s px
            raise ValueError(
                f"{network} in training mode got one image of {x.shape[-2]}x{x.shape[-1]} px, which gives a 1x1 map "
                f"at stride {norm_stride}, where BatchNorm has one value per channel to normalise: the minimum is "
                f"{norm_stride + 1} px on at least one side, or 2 images per batch, or eval mode (or norm_eval=True)")


def _check_input(x: Any, in_channels: int, network: str) -> None:
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
    """The base of ResNet and MobileNetV2. A subclass builds its taps and sets (no class annotations: TorchScript
    would read them):
    in_channels; num_classes; has_head (built with num_classes an int: forward = forward_head(forward_features));
    out_indices (as the caller numbered them: mmdet's, or timm's with features_only); taps_info (channels, stride,
    module of each tap: every map a numbering can name); timm_taps (timm's feature index i -> its tap); take (the
    taps a backbone's forward returns); feature_info; pretrained_cfg; num_features (channels of the last map,
    timm's name); global_pool and head_hidden_size (channels after pooling) through _make_head; its classifier;
    and implements `_forward_taps`, `_truncate` and `frozen_modules`."""

    # Python-side API that TorchScript is not to compile (it compiles properties unless told)
    __jit_unused_properties__ = ["default_cfg", "in_chans", "inplanes", "is_classifier", "last_channel",
                                 "stage_names"]
    frozen_stages = -1
    norm_eval = False
    features_only = False  # set by create_model(features_only=True): timm's numbering, a list of maps

    def __init__(self) -> None:
        super().__init__()
        self.network = type(self).__name__  # for error messages (a str TorchScript keeps)

    @property
    def is_classifier(self) -> bool:
        """Has a Linear classifier (num_classes > 0)."""
        return self.has_head and self.num_classes > 0

    @property
    def in_chans(self) -> int:
        """timm's name for in_channels."""
        return self.in_channels

    # ---- forward -------------------------------------------------------------------------------------
    def _forward_taps(self, x: torch.Tensor, take: List[int], last: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run up to tap `last` (through the network's end when it is the last tap); the map there and those
        of the taps in `take`."""
        raise NotImplementedError  # each network knows its own taps

    def _make_head(self, num_classes: int | None, global_pool: str) -> nn.Module | None:
        """global_pool and head_hidden_size; the Linear (an Identity for num_classes=0, None for a backbone)."""
        self.global_pool = GlobalPool2d(check_pool_type(global_pool))
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        if num_classes is None:
            return None
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()

    def _set_features(self, *, head: bool) -> None:
        """feature_info: every timm feature point for a network with a head, else the maps forward returns."""
        self.final_tap = len(self.taps_info) - 1  # an int TorchScript keeps (taps_info holds dicts it cannot)
        if head:
            self.feature_info = FeatureInfo(self.taps_info[t] for t in self.timm_taps)
        else:
            self.feature_info = FeatureInfo((self.taps_info[t] for t in self.take), self.out_indices)
        self.out_channels = self.feature_info.channels()

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """With a head: logits, or pooled features (num_classes=0). A backbone: the maps of `out_indices`, a
        tuple (mmdetection's), a list with features_only (timm's) or when scripted."""
        if self.has_head:
            return self.forward_head(self.forward_features(x))
        check_input(x, self.in_channels, self.network, self._norm_stride(self.take[-1]))
        maps = self._forward_taps(x, self.take, self.take[-1])[1]
        if not torch.jit.is_scripting():
            if not self.features_only:
                return tuple(maps)  # eager only: TorchScript has no variable-length tuple
        return maps

    def _norm_stride(self, last: int) -> int:
        """The stride of the deepest tap up to `last` whose module holds a BatchNorm in training mode; 0 in eval
        mode (no cost there), under TorchScript and torch.compile."""
        if self.training and not torch.jit.is_scripting():
            if not torch.compiler.is_compiling():
                return self._training_norm_stride(last)
        return 0

    @torch.jit.unused
    def _training_norm_stride(self, last: int) -> int:
        for tap in range(last, -1, -1):
            try:
                module = self.get_submodule(self.taps_info[tap]["module"])
            except AttributeError:  # a stage prune_intermediate_layers removed
                continue
            if any(is_batch_norm(m) and m.training for m in module.modules()):
                return int(self.taps_info[tap]["stride"])
        return 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map (N, C, H, W), before pooling."""
        check_input(x, self.in_channels, self.network, self._norm_stride(self.final_tap))
        no_taps: List[int] = []
        return self._forward_taps(x, no_taps, self.final_tap)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pooling (global_pool), then the classifier (unless pre_logits, or the network has none):
        `fc` (ResNet, torchvision's name) or `classifier` (MobileNetV2's, dropout + Linear)."""
        x = self.global_pool(x)
        if pre_logits:
            return x
        if hasattr(self, "fc"):  # static under TorchScript: a backbone compiles without a classifier
            return self.fc(x)
        if hasattr(self, "classifier"):
            return self.classifier(x)
        return x

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's: the maps at `indices` (timm's numbering: None = all, n = the last n) and the last map.

        stop_early stops after the last one asked for; norm is accepted for timm's signature (these networks
        have no final norm); output_fmt must be 'NCHW'."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: resbone's networks give 'NCHW' maps only")
        take = [self.timm_taps[i] for i in take_indices(len(self.timm_taps), indices)]
        last = take[-1] if stop_early else self.final_tap
        check_input(x, self.in_channels, self.network, self._norm_stride(last))
        final, maps = self._forward_taps(x, take, last)
        return maps if intermediates_only else (final, maps)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """timm's: remove what follows the last of `indices` (timm's numbering); the kept indices.

        A network cut short ends at that map (forward_features returns it) and loses its head (num_classes 0,
        no pooling), as does prune_head; prune_norm also drops MobileNetV2's final 1x1 conv (timm's conv_head)."""
        kept = take_indices(len(self.timm_taps), indices)
        last = self.timm_taps[kept[-1]]
        cut = last < self.final_tap and (prune_norm or prune_head or kept[-1] < len(self.timm_taps) - 1)
        if cut:
            self._cut(last)
        if self.has_head and (prune_head or cut):
            self.reset_classifier(0, "")
        return kept

    def _truncate(self, last: int) -> None:
        """Remove every module after tap `last`, so forward_features ends there."""
        raise NotImplementedError

    def _cut(self, last: int) -> None:
        self._truncate(last)
        self.num_features = self.taps_info[last]["channels"]
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def as_feature_extractor(self, out_indices: int | Sequence[int] | None) -> "FreezableBackbone":
        """timm's features_only mode on a backbone (num_classes=None): forward returns the list of maps of
        `out_indices` (timm's numbering; None = every feature point) and the network ends at the last one."""
        if self.has_head:
            raise ValueError(f"features_only needs a backbone built with num_classes=None, got num_classes="
                             f"{self.num_classes}")
        kept = take_indices(len(self.timm_taps), out_indices, "out_indices")
        self.take = [self.timm_taps[i] for i in kept]
        if self.take[-1] < self.final_tap:
            self._cut(self.take[-1])
        # out_indices kept as given, as timm's FeatureInfo (an int n: the last n, (-n, ..., -1))
        given = range(len(kept)) if out_indices is None else \
            range(-out_indices, 0) if isinstance(out_indices, int) else out_indices
        self.features_only, self.out_indices = True, tuple(given)
        self._set_features(head=False)
        return self

    # ---- timm's model API ----------------------------------------------------------------------------
    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for pretrained_cfg."""
        return self.pretrained_cfg

    def unbuilt_key(self, key: str) -> bool:
        """True for a checkpoint key (relative to this model) that names a part this model does not build.

        A full network builds everything its checkpoint holds; networks that stop early override this."""
        return False

    def get_classifier(self) -> nn.Module:
        """The final Linear (pretrained_cfg['classifier']); nn.Identity() without one."""
        return self.get_submodule(self.pretrained_cfg["classifier"]) if self.has_head else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """timm's: a fresh Linear for num_classes > 0, none for 0 (forward gives pooled features); global_pool
        ('avg', 'max', 'avgmax', 'catavgmax', '' = no pooling) replaces the pooling, None keeps it."""
        if not self.has_head:
            raise ValueError(f"{type(self).__name__} was built as a backbone (num_classes=None), so it has no "
                             f"classifier to reset; build it with num_classes={num_classes} instead")
        if not is_int(num_classes) or num_classes < 0:
            raise ValueError(f"num_classes must be 0 (no classifier) or a positive int, got {num_classes!r}")
        if global_pool is not None:
            self.global_pool = GlobalPool2d(check_pool_type(global_pool)).train(self.training)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        param = next(self.parameters(), None)
        like = dict(device=param.device, dtype=param.dtype) if param is not None else {}
        new = nn.Linear(self.head_hidden_size, num_classes, **like) if num_classes else nn.Identity()
        parent, _, name = self.pretrained_cfg["classifier"].rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, name, new.train(self.training))
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
