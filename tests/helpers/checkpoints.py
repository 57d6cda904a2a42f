"""Small native models for the convert tests: every architecture a dialect can hold, at toy width
(conversion is renaming: the property does not depend on width or depth)."""
from __future__ import annotations

import functools

import torch
from torch import nn

from resbone.detection.fcos import FCOSHead
from resbone.detection.fpn import FPN
from resbone.models.mobilenetv2 import MobileNetV2
from resbone.models.resnet import ResNet

SMALL = dict(base_channels=16, stem_channels=16, stage_blocks=(1, 1, 1, 1))
EPS = 1e-5


class NativeFCOS(nn.Module):
    """The native detector's names (backbone., fpn., head.) without the detector's machinery."""

    def __init__(self, *, norm_cfg=None, head_dcn=None, extra_levels: int = 2):
        super().__init__()
        self.backbone = ResNet(50, num_classes=None, out_indices=(1, 2, 3), norm_cfg=norm_cfg, **SMALL)
        self.fpn = FPN(self.backbone.out_channels, 64, num_extra_levels=extra_levels)
        self.head = FCOSHead(64, 3, strides=(8, 16, 32, 64, 128)[:3 + extra_levels], dcn=head_dcn)


def _with_reid_head(model: ResNet, *, embedding: int = 0, num_classes: int = 5) -> ResNet:
    """A backbone plus the re-id head resbone does not build, under its native name `reid_head.`: fast-reid's
    BNNeck and bias-free classifier, or (embedding > 0) torchreid's fc512 embedding and classifier."""
    channels = model.feature_info[-1]["channels"]
    model.reid_head = nn.Module()
    if embedding:
        model.reid_head.fc = nn.Sequential(nn.Linear(channels, embedding), nn.BatchNorm1d(embedding))
        model.reid_head.classifier = nn.Linear(embedding, num_classes)
    else:
        model.reid_head.bottleneck = nn.Sequential(nn.BatchNorm1d(channels))
        model.reid_head.weight = nn.Parameter(torch.zeros(num_classes, channels))
    return model


BUILDERS = {
    "plain18": lambda: ResNet(18, num_classes=10, stage_blocks=(1, 1, 1, 1)),
    "plain50": lambda: ResNet(50, num_classes=10, **SMALL),
    "deep_stem": lambda: ResNet(50, deep_stem=True, **SMALL),
    "deep_stem_avg_down": lambda: ResNet(50, deep_stem=True, avg_down=True, num_classes=10, **SMALL),
    "resnext": lambda: ResNet(50, groups=4, base_width=4, **SMALL),
    "gn": lambda: ResNet(50, norm_cfg=dict(type="GN", num_groups=4), **SMALL),
    "frozen_bn": lambda: ResNet(50, norm_cfg="FrozenBN", num_classes=10, **SMALL),
    "frozen_bn18": lambda: ResNet(18, norm_cfg="FrozenBN", stage_blocks=(1, 1, 1, 1)),
    "dcn": lambda: ResNet(50, dcn=dict(type="DCNv2"), stage_with_dcn=(False, True, True, True), **SMALL),
    "dcn_frozen_bn": lambda: ResNet(50, norm_cfg="FrozenBN", dcn=dict(type="DCN"),
                                    stage_with_dcn=(False, False, True, True), **SMALL),
    "se": lambda: ResNet(50, se=dict(), num_classes=10, **SMALL),
    "ibn": lambda: ResNet(50, ibn="a", **SMALL),
    "se_linear_ibn": lambda: ResNet(50, se=dict(reduction=16, form="linear"), ibn="a", **SMALL),
    "fastreid_whole": lambda: _with_reid_head(ResNet(50, se=dict(reduction=16, form="linear"), **SMALL)),
    "torchreid_fc512": lambda: _with_reid_head(ResNet(50, **SMALL), embedding=32),
    "mobilenet_v2": lambda: MobileNetV2(num_classes=10),
    "mobilenet_v2_backbone": lambda: MobileNetV2(num_classes=None),
    "mobilenet_v2_fcos": lambda: MobileNetV2(num_classes=None, out_indices=(2, 4, 6), norm_cfg="FrozenBN"),
    "fcos": lambda: NativeFCOS(),
    "fcos_frozen_bn": lambda: NativeFCOS(norm_cfg="FrozenBN"),
    "fcos_gn_p6": lambda: NativeFCOS(norm_cfg=dict(type="GN", num_groups=4), extra_levels=1),
    "fcos_dcn_head": lambda: NativeFCOS(norm_cfg="FrozenBN", head_dcn=dict(type="DCNv2")),
}


@functools.lru_cache(maxsize=None)
def _template(arch: str) -> tuple[tuple[str, torch.Tensor], ...]:
    return tuple((k, torch.empty(v.shape, dtype=v.dtype)) for k, v in BUILDERS[arch]().state_dict().items())


def random_state_dict(arch: str, seed: int = 0, *, affine_norms: bool = False, unit_scales: bool = False) -> dict:
    """The native state dict of `arch` with every value random (so that a swapped key shows), dtypes kept.
    affine_norms: running statistics (0, 1 - eps), i.e. norms that are pure affines (Caffe2's);
    unit_scales: FCOS scales 1.0 (what torchvision's FCOS can hold)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in _template(arch):
        if not value.is_floating_point():
            out[key] = torch.randint(0, 1000, value.shape, generator=g, dtype=value.dtype)
        elif affine_norms and key.endswith("running_mean"):
            out[key] = torch.zeros_like(value)
        elif affine_norms and key.endswith("running_var"):
            out[key] = torch.full_like(value, 1.0) - EPS
        elif unit_scales and key.endswith(".scale"):
            out[key] = torch.ones_like(value)
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=g)
    return out


def assert_identical(actual: dict, expected: dict) -> None:
    """Same keys, same dtypes and shapes, bit-identical values."""
    assert set(actual) == set(expected), (sorted(set(actual) - set(expected))[:5],
                                          sorted(set(expected) - set(actual))[:5])
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, key
        assert torch.equal(actual[key], value), key
