"""timm's model API on resbone's networks, proven against timm's own models and feature wrappers and
torchvision's create_feature_extractor, with the same weights: features_only, feature_info, forward_features,
forward_head, reset_classifier, get_classifier, set_grad_checkpointing; and the backbone mode kept."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from resbone import MobileNetV2, create_model
from tests.helpers import randomize_norms

TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def pair():
    """timm's resnet18 with random weights and norm statistics, and resbone's loaded with them strictly."""
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model("resnet18", pretrained=False)).eval()
    ours = create_model("resnet18").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.fixture
def x(rng):
    return torch.randn(2, 3, 64, 64, generator=rng)


def _assert_all_close(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL)


def test_features_only_returns_timms_list_and_feature_info(pair, x):
    reference, _ = pair
    ours = create_model("resnet18", features_only=True, out_indices=(2, 3, 4)).eval()  # timm's numbering: 0 = stem
    ours.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}, strict=True)
    theirs = timm.create_model("resnet18", features_only=True, out_indices=(2, 3, 4)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        got, expected = ours(x), theirs(x)
    assert isinstance(got, list)
    _assert_all_close(got, expected)
    info = ours.feature_info
    assert info.channels() == theirs.feature_info.channels() == [128, 256, 512]
    assert info.reduction() == theirs.feature_info.reduction() == [8, 16, 32]
    assert info.module_name() == theirs.feature_info.module_name() == ["layer2", "layer3", "layer4"]
    assert info.channels(-1) == 512 and info.reduction([0, 2]) == [8, 32]
    assert [(i["channels"], i["stride"]) for i in info] == [(i["num_chs"], i["reduction"]) for i in info]


def test_features_only_refuses_a_classifier():
    with pytest.raises(ValueError, match="num_classes=10"):
        create_model("resnet18", features_only=True, num_classes=10)


def test_timm_feature_list_net_wraps_a_resbone_model(pair, x):
    reference, ours = pair
    backbone = create_model("resnet18", num_classes=None).eval()
    backbone.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("fc.")})
    wrapped = timm.models.FeatureListNet(ours, out_indices=(1, 2, 3, 4)).eval()  # timm's numbering
    with torch.no_grad():
        expected = timm.models.FeatureListNet(reference, out_indices=(1, 2, 3, 4)).eval()(x)
        _assert_all_close(wrapped(x), expected)
        _assert_all_close(backbone(x), expected)


def test_timm_feature_list_net_wraps_mobilenet_v2(x):
    torch.manual_seed(0)
    ours = randomize_norms(MobileNetV2()).eval()
    backbone = MobileNetV2(num_classes=None, out_indices=(1, 2, 4, 6)).eval()  # mmdet's numbering
    backbone.load_state_dict({k: v for k, v in ours.state_dict().items() if k.startswith("features.")
                              and int(k.split(".")[1]) < len(backbone.features)})
    wrapped = timm.models.FeatureListNet(ours, out_indices=(1, 2, 3, 4), flatten_sequential=True).eval()  # timm's
    with torch.no_grad():
        _assert_all_close(wrapped(x), backbone(x))


def test_torchvision_create_feature_extractor_traces_a_resbone_model(x):
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18()).eval()
    ours = create_model("resnet18").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    nodes = {"layer2": "c3", "layer3": "c4", "layer4": "c5", "fc": "logits"}
    theirs = create_feature_extractor(reference, return_nodes=nodes)
    with torch.no_grad():
        got, expected = create_feature_extractor(ours, return_nodes=nodes)(x), theirs(x)
    assert list(got) == list(nodes.values())
    _assert_all_close(list(got.values()), list(expected.values()))


def test_torchvision_create_feature_extractor_traces_mobilenet_v2(x):
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.mobilenet_v2()).eval()
    ours = MobileNetV2().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    nodes = {"features.6": "c3", "features.13": "c4", "features.18": "c5"}
    with torch.no_grad():
        got = create_feature_extractor(ours, return_nodes=nodes)(x)
        expected = create_feature_extractor(reference, return_nodes=nodes)(x)
    _assert_all_close(list(got.values()), list(expected.values()))


def test_forward_features_and_forward_head_equal_timms(pair, x):
    reference, ours = pair
    with torch.no_grad():
        features = ours.forward_features(x)
        torch.testing.assert_close(features, reference.forward_features(x), **TOL)
        for pre_logits in (False, True):
            torch.testing.assert_close(ours.forward_head(features, pre_logits=pre_logits),
                                       reference.forward_head(features, pre_logits=pre_logits), **TOL)
    assert ours.get_classifier() is ours.fc and ours.num_features == reference.num_features == 512


@pytest.mark.parametrize("num_classes", [10, 0])
def test_reset_classifier_equals_timms(x, num_classes):
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model("resnet18", pretrained=False)).eval()
    ours = create_model("resnet18").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.reset_classifier(num_classes)
    ours.reset_classifier(num_classes)
    if num_classes:
        ours.fc.load_state_dict(reference.fc.state_dict())
    with torch.no_grad():
        got, expected = ours(x), reference(x)
    assert got.shape == expected.shape == (2, num_classes or 512)
    torch.testing.assert_close(got, expected, **TOL)
    assert ours.num_classes == num_classes


def test_mobilenet_v2_reset_classifier_keeps_torchvisions_dropout_and_layout():
    model = MobileNetV2(num_classes=1000)
    model.reset_classifier(7)
    assert model.get_classifier() is model.classifier[1] and model.classifier[1].out_features == 7
    assert isinstance(model.classifier[0], torch.nn.Dropout)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_set_grad_checkpointing_keeps_outputs_and_gradients(rng):
    torch.manual_seed(0)
    plain = create_model("resnet18", num_classes=None)
    checkpointed = create_model("resnet18", num_classes=None)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing(True)
    assert all(block.with_cp for layer in (checkpointed.layer1, checkpointed.layer4) for block in layer)
    x = torch.randn(2, 3, 64, 64, generator=rng)
    for model in (plain, checkpointed):
        sum(m.sum() for m in model(x)).backward()
    plain_params = dict(plain.named_parameters())
    for name, b in checkpointed.named_parameters():
        torch.testing.assert_close(b.grad, plain_params[name].grad, **TOL, msg=name)


@pytest.mark.parametrize("name, kwargs", [("resnet18", dict(out_indices=(1, 2))), ("mobilenet_v2", {})])
def test_a_backbone_returns_its_tuple_and_forward_features_is_the_last_map(name, kwargs, x):
    model = create_model(name, num_classes=None, **kwargs).eval()
    with torch.no_grad():
        maps, last = model(x), model.forward_features(x)
        pooled = model.forward_head(last)
    assert isinstance(maps, tuple) and len(maps) == len(model.feature_info)
    assert isinstance(last, torch.Tensor) and last.shape[1] == model.num_features
    assert pooled.shape == (2, model.num_features)
    if name == "mobilenet_v2":  # built up to its last output: that output is the last map
        torch.testing.assert_close(last, maps[-1])
    with pytest.raises(ValueError, match="backbone"):
        model.reset_classifier(10)
    assert isinstance(model.get_classifier(), torch.nn.Identity)


def test_reset_classifier_refuses_a_pooling_timm_does_not_have():
    with pytest.raises(ValueError, match="catavgmax.*'median'"):
        create_model("resnet18").reset_classifier(5, global_pool="median")
    with pytest.raises(ValueError, match="'fast'"):
        create_model("resnet18", global_pool="fast")


def test_stage_names_name_the_modules_feature_info_names():
    resnet = create_model("resnet18")
    assert resnet.feature_info.module_name() == ["relu"] + resnet.stage_names  # the stem is timm's index 0
    mobilenet = MobileNetV2()
    assert set(mobilenet.feature_info.module_name()) <= set(mobilenet.stage_names)  # timm names 5 of mmdet's 8
    for model in (resnet, mobilenet):
        assert all(model.get_submodule(name) is not None for name in model.feature_info.module_name())
