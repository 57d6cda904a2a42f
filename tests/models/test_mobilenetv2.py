"""MobileNetV2 against torchvision (keys, strict load, outputs, gradients) and timm (copied weights), plus
the backbone mode (strides, channels, truncation, freezing) and its errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

from resbone import create_model
from resbone.models.mobilenetv2 import MobileNetV2
from tests.helpers import randomize_norms

TOL = 1e-5


@pytest.mark.parametrize("width_mult", [1.0, 0.5])
def test_classifier_has_torchvision_keys_loads_strict_and_gives_equal_logits(width_mult, rng):
    ref = randomize_norms(torchvision.models.mobilenet_v2(width_mult=width_mult)).eval()
    ours = create_model("mobilenet_v2", width_mult=width_mult).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names, same order
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    expected = ref(x)
    torch.testing.assert_close(ours(x), expected, atol=TOL * expected.abs().max().item(), rtol=TOL)


def test_train_mode_gradients_equal_torchvision(rng):
    ref = torchvision.models.mobilenet_v2(width_mult=0.5, dropout=0.0).train()
    ours = MobileNetV2(width_mult=0.5, dropout=0.0).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    ref(x).logsumexp(1).sum().backward()
    ours(x).logsumexp(1).sum().backward()
    ref_params = dict(ref.named_parameters())
    for name, p_ours in ours.named_parameters():
        torch.testing.assert_close(p_ours.grad, ref_params[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_timm_mobilenetv2_100_checkpoint_loads_and_gives_equal_logits(rng):
    timm = pytest.importorskip("timm")
    ref = randomize_norms(timm.create_model("mobilenetv2_100", pretrained=False)).eval()
    ours = create_model("mobilenetv2_100", checkpoint=ref.state_dict()).eval()  # timm's names, strict
    x = torch.randn(2, 3, 64, 64, generator=rng)
    expected = ref(x)
    torch.testing.assert_close(ours(x), expected, atol=TOL * expected.abs().max().item(), rtol=TOL)


def test_backbone_returns_torchvision_feature_maps_at_strides_4_8_16_32(rng):
    ref = randomize_norms(torchvision.models.mobilenet_v2()).eval()
    ours = MobileNetV2(num_classes=None).eval()  # mmdet's default out_indices (1, 2, 4, 7)
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert missing == [] and unexpected == ["classifier.1.weight", "classifier.1.bias"]
    assert [(i["channels"], i["stride"], i["module"]) for i in ours.feature_info] == \
        [(24, 4, "features.3"), (32, 8, "features.6"), (96, 16, "features.13"), (1280, 32, "features.18")]
    x = torch.randn(1, 3, 64, 64, generator=rng)
    expected, h = [], x
    for i, module in enumerate(ref.features):
        h = module(h)
        if i in (3, 6, 13, 18):
            expected.append(h)
    outs = ours(x)
    assert isinstance(outs, tuple) and [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, atol=TOL, rtol=TOL)


def test_backbone_builds_only_what_its_outputs_use_so_every_parameter_gets_a_gradient(rng):
    model = MobileNetV2(num_classes=None, out_indices=(1, 2, 4, 6))  # FCOS's features 3 / 6 / 13 / 17
    assert len(model.features) == 18 and model.out_channels == [24, 32, 96, 320]
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64, generator=rng))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_frozen_stages_and_norm_eval_survive_train():
    model = MobileNetV2(num_classes=None, frozen_stages=2, norm_eval=False)
    assert model.train() is model
    for i, module in enumerate(model.features):
        frozen = i <= 3  # stem, stage 0 (features.1), stage 1 (features.2-3)
        assert all(p.requires_grad != frozen for p in module.parameters()), i
        assert all(m.training != frozen for m in module.modules()), i
    stem_only = MobileNetV2(num_classes=None, frozen_stages=0).train()
    assert not any(p.requires_grad for p in stem_only.features[0].parameters())
    assert all(p.requires_grad for p in stem_only.features[1].parameters())
    norm_eval = MobileNetV2(num_classes=None, norm_eval=True).train()
    bns = [m for m in norm_eval.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and norm_eval.features[5].conv[3].training is False
    assert norm_eval.features[5].training  # only the norms are in eval


def test_gradient_checkpointing_gives_the_same_gradients(rng):
    plain = MobileNetV2(num_classes=None, width_mult=0.5, out_indices=(2, 4))
    checkpointed = MobileNetV2(num_classes=None, width_mult=0.5, out_indices=(2, 4), with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=rng, requires_grad=True)
    for model in (plain, checkpointed):
        sum(o.square().sum() for o in model(x)).backward()
    plain_params = dict(plain.named_parameters())
    for name, b in checkpointed.named_parameters():
        torch.testing.assert_close(b.grad, plain_params[name].grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(num_classes=None, out_indices=(8,)), ValueError, ["(8,)", "0..7"]),
    (dict(num_classes=None, out_indices=(4, 2)), ValueError, ["(4, 2)", "increasing"]),
    (dict(num_classes=None, out_indices=3), TypeError, ["3", "sequence"]),
    (dict(frozen_stages=9), ValueError, ["frozen_stages", "9"]),
    (dict(width_mult=0), ValueError, ["width_mult", "0"]),
    (dict(num_classes=-1), ValueError, ["num_classes", "-1"]),
    (dict(norm_cfg="LayerNorm"), ValueError, ["'LayerNorm'", "BN"]),
])
def test_bad_arguments_name_the_value_and_the_allowed_ones(kwargs, error, words):
    with pytest.raises(error) as info:
        MobileNetV2(**kwargs)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_bad_input_and_download_requests_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(1, 1, 32, 32\)"):
        MobileNetV2(width_mult=0.5)(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="IMAGENET1K_V3"):
        create_model("mobilenet_v2", weights="IMAGENET1K_V3")


def test_pretrained_cfg_matches_torchvision_weights_transforms():
    model = MobileNetV2()
    cfg = model.pretrained_cfg
    transforms = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    assert tuple(cfg["mean"]) == tuple(transforms.mean) and tuple(cfg["std"]) == tuple(transforms.std)
    assert cfg["input_size"][1:] == (transforms.crop_size[0],) * 2
    assert cfg["crop_pct"] == pytest.approx(transforms.crop_size[0] / transforms.resize_size[0])
    assert cfg["interpolation"] == transforms.interpolation.value
    reference = torchvision.models.mobilenet_v2()
    for role in ("first_conv", "classifier"):
        assert model.get_submodule(cfg[role]).weight.shape == reference.get_submodule(cfg[role]).weight.shape


@pytest.mark.parametrize("out_indices", [(1, 2), (1, 2, 4), (7,)])
def test_unbuilt_key_names_exactly_the_full_checkpoint_keys_a_backbone_leaves_out(out_indices):
    backbone = MobileNetV2(num_classes=None, out_indices=out_indices)
    full = torchvision.models.mobilenet_v2().state_dict()
    built = backbone.state_dict()
    left_out = {k for k in full if k not in built and not k.startswith("classifier.")}
    assert {k for k in full if backbone.unbuilt_key(k)} == left_out
    classifier = MobileNetV2()
    assert not any(classifier.unbuilt_key(k) for k in full)
