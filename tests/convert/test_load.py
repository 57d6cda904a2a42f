"""load_checkpoint: detects the dialect from the model's names, names every missing / unexpected /
mismatched key in one error (loading nothing) or a report, drops a classifier of another size with a
warning, adapts the first conv to other input channels as timm's adapt_input_conv does, fits detector
weights to a backbone, and is what create_model(checkpoint=...) calls."""
from __future__ import annotations

import warnings

import pytest
import torch
from timm.models import adapt_input_conv

from resbone import create_model
from resbone.convert import convert_state_dict, load_checkpoint, save_state_dict_file
from resbone.models.resnet import ResNet
from tests.helpers.checkpoints import SMALL, assert_identical, random_state_dict


def _small18(**kwargs) -> ResNet:
    return ResNet(18, stage_blocks=(1, 1, 1, 1), **kwargs)


def test_strict_error_names_every_problem_and_loads_nothing():
    model = _small18(num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = random_state_dict("plain18")
    del sd["layer1.0.conv1.weight"]
    sd["layer9.0.conv1.weight"] = torch.zeros(1)
    sd["layer2.0.bn1.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as info:
        load_checkpoint(model, sd, dialect="resbone")
    message = str(info.value)
    assert "layer1.0.conv1.weight" in message and "missing" in message
    assert "layer9.0.conv1.weight" in message and "unexpected" in message
    assert "layer2.0.bn1.weight checkpoint [3] vs model [128]" in message
    assert_identical(model.state_dict(), before)


def test_non_strict_returns_the_report_and_loads_the_rest():
    model = _small18(num_classes=10)
    sd = random_state_dict("plain18")
    del sd["layer1.0.conv1.weight"]
    sd["layer2.0.bn1.weight"] = torch.zeros(3)
    report = load_checkpoint(model, sd, dialect="resbone", strict=False)
    assert not report.ok
    assert report.missing == ["layer1.0.conv1.weight"]
    assert report.mismatched == [("layer2.0.bn1.weight", (3,), (128,))]
    assert torch.equal(model.layer4[0].conv2.weight, sd["layer4.0.conv2.weight"])


def test_classifier_of_another_size_is_dropped_with_a_warning():
    sd = random_state_dict("plain18")  # 10 classes
    model = _small18(num_classes=7)
    fc_before = model.fc.weight.clone()
    with pytest.warns(UserWarning, match=r"dropped the checkpoint's classifier fc\.weight \[10, 512\]"):
        report = load_checkpoint(model, sd)
    assert report.ok and "fc.weight" in report.dropped
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.conv1.weight, sd["conv1.weight"])


def test_classifier_is_dropped_silently_for_a_backbone():
    backbone = _small18(num_classes=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_checkpoint(backbone, random_state_dict("plain18"))
    assert report.ok and {"fc.weight", "fc.bias"} <= set(report.dropped)


@pytest.mark.parametrize("in_channels", [1, 2, 4, 7])
def test_first_conv_adapted_like_timm(in_channels):
    sd = random_state_dict("plain18")
    model = _small18(num_classes=10, in_channels=in_channels)
    report = load_checkpoint(model, sd)
    assert report.adapted and report.adapted[0].startswith("conv1.weight")
    expected = adapt_input_conv(in_channels, sd["conv1.weight"].clone())
    assert torch.allclose(model.conv1.weight, expected, rtol=0, atol=1e-6)


def test_deep_stem_first_conv_adapted():
    sd = random_state_dict("deep_stem")
    model = ResNet(50, deep_stem=True, in_channels=1, **SMALL)
    load_checkpoint(model, convert_state_dict(sd, "resbone", "timm"))
    assert torch.allclose(model.stem[0].weight, sd["stem.0.weight"].sum(1, keepdim=True))


def test_detector_weights_into_a_backbone():
    """maskrcnn/FCOS detector checkpoint -> bare backbone: backbone.body.* kept, FPN and head left out."""
    theirs = convert_state_dict(random_state_dict("fcos_frozen_bn"), "resbone", "maskrcnn")
    backbone = ResNet(50, norm_cfg="FrozenBN", num_classes=None, **SMALL)
    report = load_checkpoint(backbone, theirs)
    assert report.ok and report.dialect == "maskrcnn"
    assert any(k.startswith("fpn.") for k in report.dropped) and any(k.startswith("head.") for k in report.dropped)
    assert torch.equal(backbone.conv1.weight, theirs["backbone.body.stem.conv1.weight"])


def test_prefix_option_takes_a_sub_dict():
    theirs = convert_state_dict(random_state_dict("fcos"), "resbone", "mmdet")
    backbone = ResNet(50, num_classes=None, **SMALL)
    report = load_checkpoint(backbone, theirs, dialect="mmdet", prefix="backbone.")
    assert report.ok and torch.equal(backbone.layer1[0].conv1.weight, theirs["backbone.layer1.0.conv1.weight"])
    with pytest.raises(ValueError, match="no checkpoint key starts with prefix 'bone.'"):
        load_checkpoint(backbone, theirs, prefix="bone.")


def test_what_a_checkpoint_cannot_hold_is_tolerated():
    """A FrozenBN model reads a BN checkpoint (num_batches_tracked ignored); a DCN model reads a plain
    checkpoint (offset convs stay zero-initialised, which makes them plain convs)."""
    frozen = ResNet(50, norm_cfg="FrozenBN", num_classes=10, **SMALL)
    assert load_checkpoint(frozen, random_state_dict("plain50")).ok
    dcn = ResNet(50, dcn=dict(type="DCN"), stage_with_dcn=(False, True, True, True), **SMALL)
    report = load_checkpoint(dcn, random_state_dict("plain50"))
    assert report.ok and "layer2.0.conv2.conv_offset.weight" in report.initialized
    bn = ResNet(50, num_classes=10, **SMALL)
    report = load_checkpoint(bn, random_state_dict("frozen_bn"))
    assert report.ok and "bn1.num_batches_tracked" in report.initialized


def test_no_dialect_fits_gives_a_clear_error():
    with pytest.raises(ValueError, match=r"no dialect .* turns this checkpoint's names into the model's.*vit\.cls"):
        load_checkpoint(_small18(), {"vit.cls_token": torch.zeros(1)})
    with pytest.raises(TypeError, match="must be a file path or a state dict"):
        load_checkpoint(_small18(), 42)
    with pytest.raises(ValueError, match="unknown dialect 'pytorch'"):
        load_checkpoint(_small18(), random_state_dict("plain18"), dialect="pytorch")


def test_create_model_with_a_detectron2_pickle(tmp_path):
    """End to end: detectron2 names in a .pkl of numpy arrays -> create_model(checkpoint=...)."""
    native = create_model("resnet18", stage_blocks=(1, 1, 1, 1)).state_dict()
    native = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in native.items()}
    path = save_state_dict_file(convert_state_dict(native, "resbone", "detectron2"), tmp_path / "r18.pkl")
    model = create_model("resnet18", stage_blocks=(1, 1, 1, 1), checkpoint=path)
    assert_identical(model.state_dict(), native)


def test_detector_checkpoints_into_a_native_detector():
    """torchvision FCOS names load into the native detector (dialect picked by the model's names);
    ImageNet backbone weights load into its backbone (prefix added), the FPN and head reported missing."""
    from tests.helpers.checkpoints import NativeFCOS

    model = NativeFCOS()
    native = random_state_dict("fcos", unit_scales=True)
    report = load_checkpoint(model, convert_state_dict(native, "resbone", "torchvision"))
    assert report.ok and report.dialect == "torchvision"
    assert_identical(model.state_dict(), native)
    report = load_checkpoint(NativeFCOS(), random_state_dict("plain50"), strict=False)
    assert "backbone.conv1.weight" in report.loaded and "backbone.fc.weight" in report.dropped
    assert report.missing and all(k.startswith(("fpn.", "head.")) for k in report.missing)


def test_classifier_with_the_same_classes_but_another_width_is_a_mismatch_not_a_drop():
    # resnet18's fc [10, 512] into a model whose fc is [10, 2048]: same classes, so not "another number of
    # classes"; before, fc.weight was dropped with that warning while fc.bias [10] silently loaded.
    sd = random_state_dict("plain18")
    model = _small18(num_classes=10)
    model.fc = torch.nn.Linear(2048, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_checkpoint(model, sd, strict=False)
    assert report.mismatched == [("fc.weight", (10, 512), (10, 2048))]
    assert "fc.weight" not in report.dropped
    with pytest.raises(ValueError, match=r"fc\.weight checkpoint \[10, 512\] vs model \[10, 2048\]"):
        load_checkpoint(model, sd)


def test_full_mobilenet_v2_weights_load_strictly_into_a_truncated_backbone():
    """A MobileNetV2 backbone builds only up to its last out_index (FCOS's (2, 4, 6) stops at features.17);
    torchvision's full checkpoint used to fail strict loading on features.18 ('unexpected'). Those keys
    are now dropped like the classifier, the maps equal torchvision's, and a real stray key still fails."""
    import torchvision

    ref = torchvision.models.mobilenet_v2().eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    model = create_model("mobilenet_v2", num_classes=None, out_indices=(2, 4, 6)).eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.ok and "features.18.0.weight" in report.dropped and "classifier.1.weight" in report.dropped
    x = torch.randn(1, 3, 64, 64)
    expected, h = [], x
    with torch.no_grad():
        for i, module in enumerate(ref.features):
            h = module(h)
            if i in (6, 13, 17):
                expected.append(h)
        for out, exp in zip(model(x), expected, strict=True):
            torch.testing.assert_close(out, exp, atol=1e-4, rtol=1e-4)
    stray = dict(ref.state_dict(), **{"features.5.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected .*features\.5\.extra\.weight"):
        load_checkpoint(model, stray)


def test_prefix_without_the_dot_means_what_mmengine_means():
    # mmengine's init_cfg prefix='backbone' selects 'backbone.*'; before, the keys became '.layer1...' and
    # nothing loaded ("no checkpoint key starts with..." or every key unexpected)
    theirs = convert_state_dict(random_state_dict("fcos"), "resbone", "mmdet")
    backbone = ResNet(50, num_classes=None, **SMALL)
    report = load_checkpoint(backbone, theirs, dialect="mmdet", prefix="backbone")
    assert report.ok and torch.equal(backbone.layer1[0].conv1.weight, theirs["backbone.layer1.0.conv1.weight"])


def test_nan_or_inf_weights_are_refused_naming_the_first_bad_tensors(tmp_path):
    """A diverged run's checkpoint used to load without a word and make every output NaN."""
    sd = random_state_dict("plain18")
    sd["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    sd["fc.bias"][3] = float("inf")
    path = save_state_dict_file(sd, tmp_path / "diverged.pth")
    model = _small18(num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for checkpoint in (sd, path):
        with pytest.raises(ValueError, match=r"NaN or Inf values in 2 tensor\(s\): layer2\.0\.conv1\.weight, fc\.bias"):
            load_checkpoint(model, checkpoint, strict=False)
    assert_identical(model.state_dict(), before)
    with pytest.raises(ValueError, match="allow_nonfinite=True"):
        create_model("resnet18", stage_blocks=(1, 1, 1, 1), num_classes=10, checkpoint=path)
    with pytest.raises(ValueError, match="layer2.0.conv1.weight"):
        convert_state_dict(sd, "resbone", "timm")
    from resbone.engine.checkpoint import load_weights  # what train's MODEL.WEIGHT, eval and predict load through

    with pytest.raises(ValueError, match="NaN or Inf"):
        load_weights(model, str(path))
    report = load_checkpoint(model, path, allow_nonfinite=True)
    assert report.ok and torch.isnan(model.layer2[0].conv1.weight[0, 0, 0, 0])
    assert torch.isinf(convert_state_dict(sd, "resbone", "timm", allow_nonfinite=True)["fc.bias"][3])


class _Described(torch.nn.Module):
    """A network resbone's loader knows nothing of, except what it declares (timm's pretrained_cfg keys)."""

    pretrained_cfg = dict(first_conv="entry", classifier="head")

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.entry = torch.nn.Conv2d(in_channels, 4, 3)
        self.head = torch.nn.Linear(4, num_classes)


def test_the_loader_asks_the_model_for_its_first_conv_and_classifier():
    """No key names are built into the loader: the first conv and the classifier come from pretrained_cfg."""
    source = _Described(3, 5).state_dict()
    target = _Described(1, 7)
    with pytest.warns(UserWarning, match=r"dropped the checkpoint's classifier head\.weight \[5, 4\]"):
        report = load_checkpoint(target, source, dialect="resbone")
    assert report.ok and report.adapted == ["entry.weight (1 input channels)"]
    assert torch.allclose(target.entry.weight, source["entry.weight"].sum(1, keepdim=True))
    undescribed = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))  # says nothing: a shape mismatch is a mismatch
    with pytest.raises(ValueError, match=r"0\.weight checkpoint \[4, 3, 3, 3\] vs model \[4, 1, 3, 3\]"):
        load_checkpoint(undescribed, {"0.weight": source["entry.weight"], "0.bias": source["entry.bias"]})
