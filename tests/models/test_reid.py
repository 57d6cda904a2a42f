"""SE / IBN / re-id variants: timm (and timm's legacy senet, in Cadene's names) with weights loaded give equal
logits; IBN-a's halves by hand; SE on the residual branch before the addition; last_stride keeps 1/16."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resbone import create_model, list_models, load_checkpoint
from resbone.layers.attention import SqueezeExcitation
from resbone.layers.norm import IBN
from tests.helpers import randomize_norms

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("ours,theirs,dialect", [
    ("seresnet50", "seresnet50", "resbone"),
    ("seresnext50_32x4d", "seresnext50_32x4d", "resbone"),
    ("se_resnet50", "legacy_seresnet50", "pretrainedmodels"),  # Cadene's names: layer0., se_module., last_linear
    ("se_resnext50_32x4d", "legacy_seresnext50_32x4d", "pretrainedmodels"),
])
def test_se_variants_equal_timm_with_copied_weights(ours, theirs, dialect, rng):
    ref = randomize_norms(timm.create_model(theirs, pretrained=False)).eval()
    model = create_model(ours).eval()
    report = load_checkpoint(model, ref.state_dict())  # strict
    assert report.dialect == dialect and len(report.loaded) == len(ref.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=rng)
    expected = ref(x)
    torch.testing.assert_close(model(x), expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)


def test_se_acts_on_the_residual_branch_before_the_addition(rng):
    model = create_model("seresnet50", num_classes=None, stage_blocks=(1, 1, 1, 1)).eval()
    block = model.layer1[0]
    for p in block.se.parameters():
        nn.init.normal_(p, std=0.5)
    x = torch.randn(1, 64, 8, 8, generator=rng)
    branch = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))))
    expected = torch.relu(block.se(branch) + block.downsample(x))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    wrong = torch.relu(block.se(branch + block.downsample(x)))  # SE after the addition: a different network
    assert (block(x) - wrong).abs().max() > 1e-3


def test_ibn_a_norm_output_equals_instance_norm_and_batch_norm_halves_by_hand(rng):
    model = create_model("resnet50_ibn_a", num_classes=None)
    norm = model.layer2[1].bn1
    assert isinstance(norm, IBN) and norm.half == 64 and norm.IN.num_features == 64 and norm.BN.num_features == 64
    randomize_norms(model)
    x = torch.randn(2, 128, 5, 6, generator=rng)
    first, rest = x[:, :64], x[:, 64:]
    inst = (first - first.mean((2, 3), keepdim=True)) / torch.sqrt(first.var((2, 3), unbiased=False, keepdim=True)
                                                                    + 1e-5)
    inst = inst * norm.IN.weight[:, None, None] + norm.IN.bias[:, None, None]
    bn = norm.BN
    batch_eval = (rest - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    batch_eval = batch_eval * bn.weight[:, None, None] + bn.bias[:, None, None]
    torch.testing.assert_close(norm.eval()(x), torch.cat((inst, batch_eval), 1), atol=1e-5, rtol=1e-5)
    batch_train = (rest - rest.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        rest.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps)
    batch_train = batch_train * bn.weight[:, None, None] + bn.bias[:, None, None]
    torch.testing.assert_close(norm.train()(x), torch.cat((inst, batch_train), 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet50_ibn_a", "se_resnet50_ibn_a"])
def test_ibn_a_is_in_every_block_of_layer1_to_layer3_only(name):
    model = create_model(name)
    for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        for block in layer:
            assert isinstance(block.bn1, IBN) == (stage < 3)
            assert isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.bn3, nn.BatchNorm2d)
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert sum(isinstance(m, IBN) for m in model.modules()) == 3 + 4 + 6


def test_se_resnet50_ibn_a_uses_the_reid_linear_se():
    model = create_model("se_resnet50_ibn_a")
    se = model.layer3[0].se
    assert isinstance(se, SqueezeExcitation) and se.form == "linear"
    assert isinstance(se.fc1, nn.Linear) and se.fc1.bias is None and (se.fc1.in_features, se.fc1.out_features) == \
        (1024, 64)


@pytest.mark.parametrize("name", ["resnet50", "se_resnet50_ibn_a"])
def test_last_stride_1_keeps_a_person_crop_at_one_sixteenth(name, rng):
    model = create_model(name, last_stride=1, num_classes=None, out_indices=(3,)).eval()
    assert model.feature_info[-1]["stride"] == 16
    with torch.no_grad():
        (out,) = model(torch.randn(1, 3, 256, 128, generator=rng))
    assert out.shape == (1, 2048, 16, 8)


def test_senet_stem_pool_is_ceil_mode_without_padding_and_the_keys_are_ours():
    model = create_model("se_resnet50")
    assert (model.maxpool.padding, model.maxpool.ceil_mode) == (0, True)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)  # caffe style
    assert "layer1.0.se.fc1.bias" in model.state_dict() and "fc.weight" in model.state_dict()
    x = torch.randn(1, 64, 32, 32)
    torch.testing.assert_close(model.maxpool(x), F.max_pool2d(x, 3, 2, 0, ceil_mode=True))


def test_variants_are_registered():
    names = set(list_models("*se*")) | set(list_models("*ibn*"))
    assert {"se_resnet50", "se_resnet101", "se_resnext50_32x4d", "seresnet50", "seresnext50_32x4d",
            "resnet50_ibn_a", "se_resnet50_ibn_a", "se_resnet50_fastreid", "se_resnet101_fastreid"} <= names
