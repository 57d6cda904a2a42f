"""The registry: names, wildcards, overrides, torchvision's factory keywords, clear errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

import resbone
from resbone import create_model, list_models, register_model

REQUIRED = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
            "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "resnet50c",
            "resnet101c", "resnet50d", "resnet101d"]


def test_every_required_name_is_registered():
    assert set(REQUIRED) <= set(list_models())


def test_wildcards():
    assert list_models("resnet5*") == sorted(n for n in list_models() if n.startswith("resnet5"))
    assert "resnet50d" in list_models("resnet50?") and "resnet50" not in list_models("resnet50?")
    assert list_models("no_such_*") == []


def test_overrides_reach_the_model():
    model = create_model("resnet18", num_classes=None, out_indices=(2, 3), frozen_stages=2)
    assert model.num_classes == 0 and model.out_indices == (2, 3) and model.frozen_stages == 2


def test_torchvision_keywords_are_mapped():
    model = create_model("resnet50", width_per_group=128, groups=1, zero_init_residual=True, num_classes=7,
                         norm_layer=torch.nn.BatchNorm2d, weights=None, progress=False)
    reference = torchvision.models.wide_resnet50_2(num_classes=7)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


def test_weights_other_than_none_are_refused_with_a_way_out():
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        create_model("resnet18", weights="IMAGENET1K_V1")


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError) as info:
        create_model("resnet05")
    assert "'resnet05'" in str(info.value) and "resnet50" in str(info.value)
    with pytest.raises(TypeError):
        create_model(50)


def test_register_model_refuses_a_second_function_under_one_name():
    def resnet18(**kwargs):
        return None

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet18)


def test_bad_replace_stride_with_dilation():
    with pytest.raises(ValueError, match="3-element"):
        resbone.create_model("resnet50", replace_stride_with_dilation=[True])
