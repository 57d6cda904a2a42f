"""Both stage numberings against timm's own resnet50 and mobilenetv2_100 with the same weights: timm's numbering
(create_model(features_only=True, out_indices=), timm.models.FeatureListNet on a resbone network,
forward_intermediates(indices=)) gives timm's maps for the same indices; mmdetection's numbering
(ResNet(out_indices=) / MobileNetV2(out_indices=), num_classes=None) gives the maps the table in docs/timm.md
says. Also global_pool / num_classes=0 / reset_classifier against timm's head."""
from __future__ import annotations

import pytest
import timm
import torch

from resbone import MobileNetV2, ResNet, create_model
from tests.helpers import randomize_norms

TOL = dict(atol=1e-4, rtol=1e-4)
# timm index -> mmdetection index of the same map (None: the stem, which mmdetection's API does not return)
MMDET_OF_TIMM = {"resnet50": (None, 0, 1, 2, 3), "mobilenetv2_100": (0, 1, 2, 4, 6)}


@pytest.fixture(scope="module", params=["resnet50", "mobilenetv2_100"])
def pair(request):
    """timm's network with random weights and norm statistics, and resbone's of the same name loaded with them."""
    torch.manual_seed(0)
    name = request.param
    reference = randomize_norms(timm.create_model(name, pretrained=False)).eval()
    ours = create_model(name, checkpoint=reference.state_dict()).eval()
    return name, reference, ours


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _assert_maps_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("out_indices", [None, (1, 2, 3), (2, 3, 4), (0, 4), (-2, -1)])
def test_features_only_numbers_as_timm(pair, x, out_indices):
    name, reference, _ = pair
    theirs = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices or (0, 1, 2, 3, 4))
    if out_indices is None:  # the default is every feature point, as timm's
        theirs = timm.create_model(name, pretrained=False, features_only=True)
    ours = create_model(name, features_only=True, out_indices=out_indices, checkpoint=reference.state_dict()).eval()
    wanted = theirs.state_dict()
    theirs.load_state_dict({k: v for k, v in reference.state_dict().items() if k in wanted}, strict=True)
    if name == "resnet50":  # the same modules: both stop after the last map (timm's MobileNetV2 builds every block)
        assert set(ours.state_dict()) == set(wanted)
    with torch.no_grad():
        got, expected = ours(x), theirs.eval()(x)
    assert isinstance(got, list)
    _assert_maps_equal(got, expected)
    for key in ("channels", "reduction"):
        assert getattr(ours.feature_info, key)() == getattr(theirs.feature_info, key)()
    assert ours.feature_info.out_indices == theirs.feature_info.out_indices


@pytest.mark.parametrize("out_indices", [(1, 2, 3), (2, 3, 4), (0, 1, 2, 3, 4)])
def test_timm_feature_list_net_wraps_a_resbone_network(pair, x, out_indices):
    name, reference, ours = pair
    flatten = name.startswith("mobilenet")  # both MobileNetV2s keep their blocks in a sequence
    with torch.no_grad():
        got = timm.models.FeatureListNet(ours, out_indices=out_indices, flatten_sequential=flatten).eval()(x)
        expected = timm.models.FeatureListNet(reference, out_indices=out_indices, flatten_sequential=flatten).eval()(x)
    _assert_maps_equal(got, expected)


@pytest.mark.parametrize("indices", [None, 3, [1, 2, 3], [0, 4]])
def test_forward_intermediates_numbers_as_timm(pair, x, indices):
    _, reference, ours = pair
    assert len(ours.feature_info) == len(reference.feature_info) == 5
    assert ours.feature_info.reduction() == [info["reduction"] for info in reference.feature_info]
    with torch.no_grad():
        final, maps = ours.forward_intermediates(x, indices=indices)
        final_ref, maps_ref = reference.forward_intermediates(x, indices=indices)
        early = ours.forward_intermediates(x, indices=indices, stop_early=True, intermediates_only=True)
    _assert_maps_equal(maps, maps_ref)
    _assert_maps_equal(early, maps_ref)
    torch.testing.assert_close(final, final_ref, **TOL)


def test_mmdet_numbering_gives_the_tabled_maps(pair, x):
    """mmdetection's out_indices (num_classes=None) name the maps MMDET_OF_TIMM says, as a tuple."""
    name, reference, _ = pair
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
    pairs = [(t, m) for t, m in enumerate(MMDET_OF_TIMM[name]) if m is not None]
    mmdet_indices = tuple(m for _, m in pairs)
    ours = create_model(name, num_classes=None, out_indices=mmdet_indices, checkpoint=reference.state_dict()).eval()
    with torch.no_grad():
        got = ours(x)
    assert isinstance(got, tuple) and ours.out_indices == mmdet_indices
    _assert_maps_equal(got, [expected[t] for t, _ in pairs])
    assert ours.feature_info.reduction() == [reference.feature_info[t]["reduction"] for t, _ in pairs]


def test_the_stem_is_timms_index_0_and_not_an_mmdet_index():
    assert ResNet(18, num_classes=None, out_indices=(0,)).feature_info.reduction() == [4]  # mmdet: layer1
    features = create_model("resnet18", features_only=True, out_indices=(0,))
    assert features.feature_info.reduction() == [2] and features.feature_info.module_name() == ["relu"]
    assert not hasattr(features, "layer1")  # nothing after the last map is built
    deep = create_model("resnet18d", features_only=True, out_indices=(0, 1))
    assert deep.feature_info.module_name() == ["stem", "layer1"]
    assert MobileNetV2(num_classes=None, out_indices=(7,)).feature_info.channels() == [1280]  # mmdet's last 1x1


@pytest.mark.parametrize("bad, error, words", [
    ((5,), ValueError, ["(5,)", "0..4"]), ((3, 1), ValueError, ["increasing"]), ("1", TypeError, ["'1'"]),
    (6, ValueError, ["1..5"]),
])
def test_bad_timm_out_indices_are_refused_by_name(bad, error, words):
    with pytest.raises(error) as info:
        create_model("resnet18", features_only=True, out_indices=bad)
    assert all(w in str(info.value) for w in words), str(info.value)
    with pytest.raises(ValueError, match="feature_cls='hook'"):
        create_model("resnet18", features_only=True, feature_cls="hook")


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", "catavgmax", ""])
def test_global_pool_and_num_classes_0_equal_timms(pool, x):
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool=pool))
    ours = create_model("resnet18", num_classes=0, global_pool=pool)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        got, expected = ours.eval()(x), reference.eval()(x)
    torch.testing.assert_close(got, expected, **TOL)
    assert ours.head_hidden_size == reference.head_hidden_size and ours.num_features == reference.num_features
    ours.reset_classifier(7, "avg" if pool == "" else None)  # None keeps the pooling, as timm's
    reference.reset_classifier(7, "avg" if pool == "" else None)
    ours.fc.load_state_dict(reference.fc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)


def test_timm_factory_keywords_device_dtype_in_chans():
    model = create_model("resnet18", device="meta", dtype=torch.float64, in_chans=1)
    assert {t.device.type for t in model.state_dict().values()} == {"meta"}
    assert model.conv1.weight.dtype == torch.float64 and model.in_chans == 1 == model.conv1.in_channels
    reference = timm.create_model("resnet18", pretrained=False, in_chans=1)
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
