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


def test_wildcards_follow_shell_rules():
    assert list_models("resnet1?2*") == ["resnet152", "resnet152c", "resnet152d"]
    assert list_models("wide_*") == ["wide_resnet101_2", "wide_resnet50_2"]
    assert list_models("resnet50?") == ["resnet50c", "resnet50d"]
    assert list_models("no_such_*") == []


def test_overrides_change_what_the_model_computes():
    model = create_model("resnet18", num_classes=None, out_indices=(2, 3), frozen_stages=2).train()
    maps = model(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 4, 4), (1, 512, 2, 2)]  # layer3 / layer4 of resnet18
    assert not any(p.requires_grad for p in model.layer2.parameters()) and not model.layer2.training
    assert all(p.requires_grad for p in model.layer3.parameters()) and model.layer3.training


def test_checkpoint_loads_a_torchvision_file_strictly(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", checkpoint=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="missing"):
        create_model("resnet34", checkpoint=path)


def test_torchvision_keywords_are_mapped():
    model = create_model("resnet50", width_per_group=128, groups=1, zero_init_residual=True, num_classes=7,
                         norm_layer=torch.nn.BatchNorm2d, weights=None, progress=False)
    reference = torchvision.models.wide_resnet50_2(num_classes=7)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


def test_weights_other_than_torchvisions_names_are_refused_with_a_way_out():
    # torchvision's own names load the published file (tests/weights/test_pretrained.py)
    with pytest.raises(ValueError, match="pretrained='tag'"):
        create_model("resnet18", weights="IMAGENET1K_V3")


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
