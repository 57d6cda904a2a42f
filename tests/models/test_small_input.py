"""A backbone in training mode given one image so small that a BatchNorm sees a 1x1 map names the input size and
the minimum (issue 22), exactly where torch's batch_norm itself would fail ('Expected more than 1 value per
channel when training'), and nowhere else: batch 2, eval mode, norm_eval and one pixel more all run."""
from __future__ import annotations

import pytest
import torch

from resbone.factory import create_model
from resbone.models.base import FreezableBackbone

# (model, its overrides, input side at which the deepest BatchNorm sees 1x1, the stride there)
CASES = [("resnet50", {}, 32, 32), ("resnet18", {}, 32, 32), ("resnet50d", {}, 32, 32),
         ("resnext50_32x4d", {}, 32, 32), ("resnet18", dict(replace_stride_with_dilation=[False, False, True]), 16, 16),
         ("resnet18", dict(features_only=True, out_indices=(1, 2, 3)), 16, 16),
         ("resnet18", dict(num_classes=None, out_indices=(0, 1)), 8, 8),
         ("mobilenet_v2", {}, 32, 32), ("mobilenet_v2", dict(num_classes=None, out_indices=(1, 2)), 8, 8)]


def _torchs_own_error(model: torch.nn.Module, x: torch.Tensor, monkeypatch) -> Exception | None:
    """What torch does without resbone's check."""
    with monkeypatch.context() as patch:
        patch.setattr(FreezableBackbone, "_norm_stride", lambda self, last: 0)
        try:
            model(x)
        except ValueError as error:
            return error
    return None


@pytest.mark.parametrize("name, overrides, side, stride", CASES)
def test_one_image_too_small_names_its_size_and_the_minimum(name, overrides, side, stride, monkeypatch):
    torch.manual_seed(0)
    model = create_model(name, **overrides).train()
    x = torch.rand(1, 3, side, side)
    with pytest.raises(ValueError, match=rf"one image of {side}x{side} px.*stride {stride}.*the minimum is "
                                         rf"{stride + 1} px"):
        model(x)
    assert "Expected more than 1 value per channel" in str(_torchs_own_error(model, x, monkeypatch))
    model(torch.rand(2, 3, side, side))  # two images: two values per channel
    model(torch.rand(1, 3, side + 1, side))  # one pixel more on one side: a 2x1 map
    model(torch.rand(1, 3, side, side + 1))
    model.eval()(x)


def test_norms_that_do_not_train_need_no_minimum():
    x = torch.rand(1, 3, 32, 32)
    create_model("resnet18", norm_eval=True, num_classes=None).train()(x)
    create_model("resnet18", frozen_stages=4, num_classes=None).train()(x)  # layer4's BNs in eval mode too
    create_model("resnet18", norm_cfg=dict(type="GN", num_groups=8), num_classes=None).train()(x)


def test_frozen_deepest_stage_moves_the_minimum_to_the_deepest_training_one():
    # frozen_stages=3 keeps the stem and layer1..3 in eval mode; layer4 trains, so 32 px still fails
    model = create_model("resnet18", frozen_stages=3, num_classes=None).train()
    with pytest.raises(ValueError, match="stride 32"):
        model(torch.rand(1, 3, 32, 32))


def test_forward_intermediates_checks_up_to_where_it_stops():
    model = create_model("resnet18").train()
    with pytest.raises(ValueError, match="the minimum is 17 px"):
        model.forward_intermediates(torch.rand(1, 3, 16, 16), indices=[3], stop_early=True)
    model.forward_intermediates(torch.rand(1, 3, 17, 16), indices=[3], stop_early=True)
