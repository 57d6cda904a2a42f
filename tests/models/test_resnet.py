"""resbone's ResNet against torchvision and timm: same keys, same outputs, same gradients; and
the mmdetection knobs (frozen_stages, norm_eval, with_cp, style, dilation, zero_init_residual)."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import resbone
from resbone import ResNet, create_model
from resbone.models.resnet import Bottleneck, ResLayer
from tests.helpers import randomize_norms

TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                     "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
LARGE = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2"}


def _pair(name: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A torchvision model with random weights and norm statistics, and resbone's twin loaded strictly."""
    torch.manual_seed(0)
    reference = randomize_norms(getattr(torchvision.models, name)(weights=None, **kwargs))
    ours = create_model(name, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_state_dict_keys_and_shapes_equal_torchvision(name):
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
        ours = create_model(name)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in TORCHVISION_NAMES])
def test_eval_outputs_equal_torchvision(name):
    reference, ours = _pair(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert got.shape == (2, 1000)
    assert _max_rel_diff(got, expected) < 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_train_mode_gradients_equal_torchvision(name):
    reference, ours = _pair(name, num_classes=10)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([3, 7])
    for model in (reference, ours):
        nn.functional.cross_entropy(model.train()(x), target).backward()
    ref_grads = dict(reference.named_parameters())
    for key, param in ours.named_parameters():
        assert _max_rel_diff(param.grad, ref_grads[key].grad) < 1e-4, key
    # the batch statistics were updated identically too
    ref_buffers = dict(reference.named_buffers())
    for key, buf in ours.named_buffers():
        assert torch.allclose(buf.float(), ref_buffers[key].float(), atol=1e-5), key


def _timm_to_resbone_deep_stem(state_dict: dict) -> dict:
    """timm names its deep stem conv1.0/1/3/4/6 + bn1; resbone (as mmdet) names it stem.0/1/3/4/6/7."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("conv1."):
            key = "stem." + key[len("conv1."):]
        elif key.startswith("bn1."):
            key = "stem.7." + key[len("bn1."):]
        renamed[key] = value
    return renamed


@pytest.mark.parametrize("name", ["resnet18d", "resnet50c", "resnet50d"])
def test_deep_stem_and_avg_down_equal_timm(name):
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model(name, pretrained=False)).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(_timm_to_resbone_deep_stem(reference.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _max_rel_diff(ours(x), reference(x)) < 1e-4


@pytest.mark.parametrize("dilate,output_stride", [([False, False, True], 16), ([False, True, True], 8)])
def test_dilation_equals_torchvision_replace_stride_with_dilation(dilate, output_stride):
    reference, ours = _pair("resnet50", replace_stride_with_dilation=dilate)
    backbone = create_model("resnet50", replace_stride_with_dilation=dilate, num_classes=None)
    backbone.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert _max_rel_diff(ours.eval()(x), reference.eval()(x)) < 1e-4
        c5 = backbone.eval()(x)[-1]
    assert c5.shape[-1] == 64 // output_stride
    assert backbone.feature_info[-1]["stride"] == output_stride


def test_caffe_style_puts_the_stride_in_the_first_1x1():
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet50(weights=None)).eval()
    for layer in (reference.layer2, reference.layer3, reference.layer4):  # MSRA placement, by hand
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    ours = create_model("resnet50", style="caffe").eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert _max_rel_diff(ours(x), reference(x)) < 1e-4


@pytest.mark.parametrize("norm_cfg,norm_layer", [
    (dict(type="GN", num_groups=32), lambda c: nn.GroupNorm(32, c)),
    (dict(type="FrozenBN"), FrozenBatchNorm2d),
])
def test_norm_cfg_equals_torchvision_norm_layer(norm_cfg, norm_layer):
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet50(weights=None, norm_layer=norm_layer)).eval()
    ours = create_model("resnet50", norm_cfg=norm_cfg).eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert _max_rel_diff(ours(x), reference(x)) < 1e-4


def test_zero_init_residual_matches_torchvision():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None, zero_init_residual=True)
    ours = create_model("resnet50", zero_init_residual=True)
    ref_state = reference.state_dict()
    zeroed = [key for key, got in ours.state_dict().items() if got.dim() == 1 and "weight" in key and not got.any()]
    assert zeroed == [key for key, ref in ref_state.items() if ref.dim() == 1 and "weight" in key and not ref.any()]
    assert len(zeroed) == 16 and all(key.endswith("bn3.weight") for key in zeroed)  # one per block


def test_feature_info_matches_the_maps():
    model = ResNet(50, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 96))
    assert [(i["channels"], i["stride"], i["module"]) for i in model.feature_info] == \
        [(256, 4, "layer1"), (512, 8, "layer2"), (1024, 16, "layer3"), (2048, 32, "layer4")]
    for info, fmap in zip(model.feature_info, maps):
        assert fmap.shape[1:] == (info["channels"], 64 // info["stride"], 96 // info["stride"])
    assert model.out_channels == [256, 512, 1024, 2048]


def test_last_stride_one_keeps_one_sixteenth():
    model = create_model("resnet50", last_stride=1, num_classes=None, out_indices=(3,)).eval()
    with torch.no_grad():
        (c5,) = model(torch.randn(1, 3, 256, 128))
    assert c5.shape == (1, 2048, 16, 8)


def test_num_stages_and_out_indices_select_the_outputs():
    model = ResNet(18, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(1, 2)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(128, 8, 8), (256, 4, 4)]
    assert not hasattr(model, "layer4")


def _frozen_model(**kwargs) -> ResNet:
    torch.manual_seed(0)
    return randomize_norms(ResNet(18, frozen_stages=1, **kwargs)).train()


def test_frozen_stages_freezes_exactly_the_stem_and_first_stages():
    model = _frozen_model()
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    expected = {k for k, _ in model.named_parameters() if k.split(".")[0] in ("conv1", "bn1", "layer1")}
    assert frozen == expected
    eval_norms = {k for k, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.training}
    assert eval_norms == {k for k, m in model.named_modules()
                          if isinstance(m, nn.BatchNorm2d) and k.split(".")[0] in ("bn1", "layer1")}
    deep = ResNet(18, deep_stem=True, frozen_stages=0).train()
    assert {k.split(".")[0] for k, p in deep.named_parameters() if not p.requires_grad} == {"stem"}


def test_norm_eval_keeps_every_batch_norm_in_eval_after_train():
    model = _frozen_model(norm_eval=True)
    assert model.train() is model
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.layer2[0].conv1.training  # only norms are switched


@pytest.mark.parametrize("norm_eval", [False, True])
def test_training_step_leaves_frozen_weights_and_statistics_unchanged(norm_eval):
    model = _frozen_model(norm_eval=norm_eval)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
                                weight_decay=1e-4)
    for _ in range(2):
        loss = sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        frozen = key.split(".")[0] in ("conv1", "bn1", "layer1")
        is_stat = "running_" in key or "num_batches" in key
        changed = not torch.equal(value, after[key])
        if frozen or (is_stat and norm_eval):
            assert not changed, key
        elif key.endswith("running_mean") or key.endswith("conv1.weight"):
            assert changed, key


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    results = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = ResNet(50, with_cp=with_cp, num_stages=2, out_indices=(1,)).train()
        x_ = x.clone().requires_grad_(True)
        (out,) = model(x_)
        out.square().mean().backward()
        results.append((out.detach(), x_.grad, [p.grad for p in model.parameters()]))
    (out0, gx0, g0), (out1, gx1, g1) = results
    assert torch.allclose(out0, out1, atol=1e-6) and torch.allclose(gx0, gx1, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1))


def test_basic_block_accepts_dilation():
    model = ResNet(18, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), out_indices=(3,)).eval()
    assert model.layer4[1].conv2.dilation == (4, 4)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))[0].shape == (1, 512, 8, 8)


def test_res_layer_downsample_last_puts_the_stride_in_the_last_block():
    layer = ResLayer(Bottleneck, 256, 128, 3, stride=2, downsample_first=False)
    assert [b.downsample is not None for b in layer] == [False, False, True]
    assert layer[-1].conv2.stride == (2, 2) and layer[0].conv2.stride == (1, 1)
    assert layer(torch.randn(1, 256, 16, 16)).shape == (1, 512, 8, 8)


def test_in_channels_other_than_three():
    model = ResNet(18, in_channels=1, num_classes=5).eval()
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)


# ---- every user error is a clear ValueError / TypeError / KeyError -------------------------------
@pytest.mark.parametrize("kwargs,error,words", [
    (dict(depth=42), KeyError, ["42", "18, 34, 50, 101, 152"]),
    (dict(num_stages=5), ValueError, ["num_stages", "5"]),
    (dict(out_indices=(0, 4)), ValueError, ["out_indices", "(0, 4)", "0..3"]),
    (dict(out_indices=3), TypeError, ["out_indices", "3"]),
    (dict(strides=(1, 2, 2)), ValueError, ["strides", "4 entries", "(1, 2, 2)"]),
    (dict(dilations=(1, 1)), ValueError, ["dilations", "(1, 1)"]),
    (dict(style="tensorflow"), ValueError, ["'tensorflow'", "pytorch", "caffe"]),
    (dict(norm_cfg=dict(type="LayerNorm")), ValueError, ["'LayerNorm'", "BN", "GN", "FrozenBN"]),
    (dict(norm_cfg=dict(type="GN", groups=32)), KeyError, ["groups", "num_groups"]),
    (dict(frozen_stages=5), ValueError, ["frozen_stages", "5", "-1"]),
    (dict(depth=18, groups=32), ValueError, ["groups=32", "BasicBlock"]),
    (dict(num_classes=-3), ValueError, ["num_classes", "-3"]),
    (dict(plugins=[dict(cfg=dict(type="SE"), position="after_conv4")]), ValueError, ["after_conv4",
                                                                                     "after_conv3"]),
])
def test_invalid_arguments_raise_clear_errors(kwargs, error, words):
    with pytest.raises(error) as info:
        ResNet(**kwargs)
    message = str(info.value)
    assert all(w in message for w in words), message


@pytest.mark.parametrize("x,error,words", [
    (torch.randn(1, 1, 64, 64), ValueError, ["in_channels=3", "1 channels"]),
    (torch.randn(3, 64, 64), ValueError, ["4-D", "(3, 64, 64)"]),
    ([[1.0]], TypeError, ["torch.Tensor", "list"]),
])
def test_bad_input_at_forward_time_raises_clear_errors(x, error, words):
    with pytest.raises(error) as info:
        ResNet(18)(x)
    assert all(w in str(info.value) for w in words), str(info.value)


# Widths of 0 used to pass the constructor and fail at forward time inside torch's conv.
@pytest.mark.parametrize("kwargs,words", [
    (dict(depth=18, stem_channels=0), ["stem_channels", "0"]),
    (dict(depth=18, base_channels=0), ["base_channels", "0"]),
    (dict(depth=50, base_width=0), ["base_width", "0"]),
    (dict(depth=50, groups=0), ["groups", "0"]),
    (dict(depth=50, groups=2.5), ["groups", "2.5"]),
    (dict(depth=50, base_channels=8, base_width=4), ["base_channels=8", "base_width=4"]),
    (dict(depth=50, deep_stem=True, stem_channels=1), ["stem_channels", ">= 2", "1"]),
])
def test_zero_widths_are_refused_at_construction(kwargs, words):
    with pytest.raises(ValueError) as info:
        ResNet(**kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_smallest_widths_still_build_and_run():
    # the bound is exact: base_channels * base_width = 64 gives width 1 per group, which runs
    model = ResNet(50, base_channels=16, base_width=4, stem_channels=2, deep_stem=True,
                   stage_blocks=(1, 1, 1, 1)).eval()
    assert model.layer1[0].conv1.out_channels == 1
    assert [o.shape[1] for o in model(torch.randn(1, 3, 32, 32))] == [64, 128, 256, 512]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_integer_images_are_a_clear_type_error(name):
    # a uint8 batch used to fail inside conv2d with "expected scalar type Byte but found Float"
    model = resbone.create_model(name).eval()
    with pytest.raises(TypeError, match=r"floating-point tensor, got torch\.uint8"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8).float()).shape == (1, 1000)


@pytest.mark.parametrize("name, timm_name", [("resnet50", "resnet50.tv_in1k"), ("resnet50d", "resnet50d.ra2_in1k"),
                                             ("resnet18", "resnet18.tv_in1k")])
def test_pretrained_cfg_names_the_modules_timm_names(name, timm_name):
    ours = create_model(name)
    reference = timm.create_model(timm_name, pretrained=False)
    cfg, ref_cfg = ours.pretrained_cfg, reference.pretrained_cfg
    assert ours.default_cfg is cfg
    for role in ("first_conv", "classifier"):  # the same module under each library's own path
        mine, theirs = ours.get_submodule(cfg[role]), reference.get_submodule(ref_cfg[role])
        assert type(mine) is type(theirs) and mine.weight.shape == theirs.weight.shape
    keys = ["num_classes", "mean", "std", "input_size"]
    if timm_name.endswith("tv_in1k"):  # torchvision's weights: bilinear resize to 256, crop 224
        keys += ["interpolation", "crop_pct"]
    assert {k: cfg[k] for k in keys} == {k: ref_cfg[k] for k in keys}


def test_basic_block_takes_no_style_and_both_styles_build_the_same_basic_network():
    with pytest.raises(TypeError, match="style"):
        resbone.BasicBlock(64, 64, style="caffe")
    torch.manual_seed(0)
    pytorch_style, caffe_style = ResNet(18, style="pytorch").eval(), ResNet(18, style="caffe").eval()
    caffe_style.load_state_dict(pytorch_style.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(pytorch_style(x), caffe_style(x)):
            assert torch.equal(a, b)


def _torchreid_resnet_ibn_b():
    """torchreid's resnet_ibn_b.py alone (its package __init__ pulls in its data and engine dependencies)."""
    import importlib.machinery
    import importlib.util

    root = importlib.machinery.PathFinder.find_spec("torchreid").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("torchreid_resnet_ibn_b", f"{root}/reid/models/resnet_ibn_b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet50_ibn_b_equals_torchreids():
    torch.manual_seed(0)
    reference = randomize_norms(_torchreid_resnet_ibn_b().resnet50_ibn_b(num_classes=7, pretrained=False))
    ours = create_model("resnet50_ibn_b", num_classes=7)
    ours.load_state_dict({k.replace("classifier.", "fc."): v for k, v in reference.state_dict().items()}, strict=True)
    assert isinstance(ours.bn1, nn.InstanceNorm2d) and ours.layer2[-1].IN is not None
    assert ours.layer2[0].IN is None and ours.layer3[-1].IN is None
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = reference.eval()(x)  # torchreid's eval forward: the pooled features
        assert _max_rel_diff(ours.eval().forward_head(ours.forward_features(x), pre_logits=True), features) < 1e-4
        assert _max_rel_diff(ours.train()(x), reference.train()(x)) < 1e-4  # train: logits, batch statistics
