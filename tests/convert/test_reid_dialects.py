"""Re-identification and SENet ecosystems, each against its own project's model code with random weights:
Cadene's pretrainedmodels SENet, torchreid (ResNet, SENet, IBN-a, fc512 embedding) and fast-reid (IBN, Linear SE,
whole model with BNNeck head). Their checkpoints load strict into resbone's registered models (dialect detected),
give the same outputs, drop the re-id head with a warning, and resbone's weights converted back load strict into
the reference."""
from __future__ import annotations

import warnings

import pytest
import torch

from resbone import create_model
from resbone.convert import convert_state_dict, detect_dialect, load_checkpoint
from tests.helpers.references import (
    TOL,
    fastreid_backbone,
    fastreid_whole_model,
    pretrainedmodels_senet,
    randomize,
    relative_error,
    torchreid_models,
)

SHALLOW = (1, 1, 1, 1)  # names and computations per block do not depend on depth



def _x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


# ---- Cadene's pretrainedmodels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ours_name,block,groups", [("se_resnet50", "SEResNetBottleneck", 1),
                                                   ("se_resnext50_32x4d", "SEResNeXtBottleneck", 32)])
def test_pretrainedmodels_senet_loads_into_create_model_and_converts_back(ours_name, block, groups):
    senet = pretrainedmodels_senet()
    torch.manual_seed(0)
    reference = randomize(senet.SENet(getattr(senet, block), [1, 1, 1, 1], groups=groups, reduction=16,
                                      dropout_p=None, inplanes=64, input_3x3=False, downsample_kernel_size=1,
                                      downsample_padding=0, num_classes=10))
    theirs = reference.state_dict()
    assert "layer0.conv1.weight" in theirs and "layer1.0.se_module.fc1.weight" in theirs
    ours = create_model(ours_name, stage_blocks=SHALLOW, num_classes=10).eval()
    report = load_checkpoint(ours, theirs)
    assert report.ok and report.dialect == "pretrainedmodels" and len(report.loaded) == len(theirs)
    with torch.no_grad():  # Cadene's logits pool with AvgPool2d(7), made for 224 px: pool the features instead
        expected = reference.last_linear(reference.features(_x()).mean((2, 3)))
        assert relative_error(ours(_x()), expected) < TOL
    reference.load_state_dict(convert_state_dict(ours.state_dict(), "resbone", "pretrainedmodels"), strict=True)


# ---- torchreid ---------------------------------------------------------------------------------------------------
def _torchreid(kind: str):
    torch.manual_seed(0)
    if kind == "senet":
        senet = torchreid_models("senet")
        return randomize(senet.SENet(10, "softmax", block=senet.SEResNetBottleneck, layers=[1, 1, 1, 1], groups=1,
                                     reduction=16, dropout_p=None, inplanes=64, input_3x3=False,
                                     downsample_kernel_size=1, downsample_padding=0, last_stride=2, fc_dims=None))
    if kind == "ibn_a":
        ibn = torchreid_models("resnet_ibn_a")
        return randomize(ibn.ResNet(ibn.Bottleneck, [1, 1, 1, 1], num_classes=10))
    resnet = torchreid_models("resnet")
    return randomize(resnet.ResNet(10, "softmax", resnet.Bottleneck, [1, 1, 1, 1], last_stride=1,
                                   fc_dims=[32] if kind == "fc512" else None))


TORCHREID = [("resnet", "resnet50", dict(last_stride=1)), ("senet", "se_resnet50", {}),
             ("ibn_a", "resnet50_ibn_a", {})]


@pytest.mark.parametrize("kind,ours_name,kwargs", TORCHREID, ids=[c[0] for c in TORCHREID])
def test_torchreid_classifier_is_resbones_fc_and_converts_back(kind, ours_name, kwargs):
    """torchreid trains `classifier(pool(features))`: the same function as resbone's classifier."""
    reference = _torchreid(kind)
    theirs = reference.state_dict()
    ours = create_model(ours_name, stage_blocks=SHALLOW, num_classes=10, **kwargs).eval()
    report = load_checkpoint(ours, theirs)
    assert report.ok and report.dialect == "torchreid" and len(report.loaded) == len(theirs)
    with torch.no_grad():  # in eval mode torchreid returns the pooled features
        assert relative_error(ours(_x()), reference.classifier(reference(_x()))) < TOL
    reference.load_state_dict(convert_state_dict(ours.state_dict(), "resbone", "torchreid"), strict=True)


def test_torchreid_classifier_is_dropped_silently_for_a_backbone():
    reference = _torchreid("resnet")
    backbone = create_model("resnet50", stage_blocks=SHALLOW, last_stride=1, num_classes=None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_checkpoint(backbone, reference.state_dict())
    assert report.ok and {"fc.weight", "fc.bias"} <= set(report.dropped)


def test_torchreid_embedding_head_is_dropped_with_a_warning_and_written_back():
    reference = _torchreid("fc512")
    theirs = reference.state_dict()
    ours = create_model("resnet50", stage_blocks=SHALLOW, last_stride=1, num_classes=None, out_indices=(3,)).eval()
    with pytest.warns(UserWarning, match=r"re-identification head \(9 tensors: reid_head\.fc\.0\.weight"):
        report = load_checkpoint(ours, theirs)
    assert report.ok and report.dialect == "torchreid"
    assert {"reid_head.fc.0.weight", "reid_head.fc.1.running_var", "reid_head.classifier.weight"} <= set(report.dropped)
    with torch.no_grad():
        assert relative_error(ours(_x())[0], reference.featuremaps(_x())) < TOL
    reference.load_state_dict(convert_state_dict(convert_state_dict(theirs, "torchreid", "resbone"), "resbone",
                                                 "torchreid"), strict=True)


# ---- fast-reid ---------------------------------------------------------------------------------------------------
def _fastreid(with_ibn: bool, with_se: bool):
    resnet = fastreid_backbone()
    torch.manual_seed(0)
    return randomize(resnet.ResNet(1, "BN", with_ibn, with_se, False, resnet.Bottleneck, [1, 1, 1, 1], [0, 0, 0, 0]))


FASTREID = [(True, True, "se_resnet50_ibn_a", dict(stem_pool="ceil")), (True, False, "resnet50_ibn_a",
                                                                        dict(stem_pool="ceil")),
            (False, True, "se_resnet50_fastreid", {})]


@pytest.mark.parametrize("with_ibn,with_se,ours_name,kwargs", FASTREID, ids=[c[2] for c in FASTREID])
def test_fastreid_backbone_loads_strict_gives_the_same_map_and_converts_back(with_ibn, with_se, ours_name, kwargs):
    reference = _fastreid(with_ibn, with_se)
    theirs = reference.state_dict()
    assert with_se == ("layer1.0.se.fc.0.weight" in theirs)
    ours = create_model(ours_name, stage_blocks=SHALLOW, last_stride=1, num_classes=None, out_indices=(3,),
                        **kwargs).eval()
    report = load_checkpoint(ours, theirs)
    assert report.ok and report.dialect == ("fastreid" if with_se else "resbone")  # IBN names are native
    with torch.no_grad():
        assert relative_error(ours(_x())[0], reference(_x())) < TOL
    back = convert_state_dict(ours.state_dict(), "resbone", "fastreid")
    reference.load_state_dict(back, strict=True)


def test_whole_fastreid_model_drops_the_bnneck_head_and_says_the_stem_pool_is_ceil():
    reference = _fastreid(True, True)
    whole = fastreid_whole_model(reference, feat_dim=2048, num_classes=5)
    randomize(whole)
    theirs = whole.state_dict()
    assert detect_dialect(theirs) == "fastreid"
    padded = create_model("se_resnet50_ibn_a", stage_blocks=SHALLOW, last_stride=1, num_classes=None).eval()
    with pytest.warns(UserWarning) as caught:
        report = load_checkpoint(padded, theirs)
    messages = " ".join(str(w.message) for w in caught)
    assert "heads" not in messages and "re-identification head (6 tensors: reid_head.weight" in messages
    assert "stem_pool='ceil'" in messages and report.notes
    assert report.ok and {"reid_head.bottleneck.0.weight", "reid_head.weight"} <= set(report.dropped)
    ceil = create_model("se_resnet50_ibn_a", stage_blocks=SHALLOW, last_stride=1, num_classes=None, out_indices=(3,),
                        stem_pool="ceil").eval()
    with pytest.warns(UserWarning, match="re-identification head"):
        assert not load_checkpoint(ceil, theirs).notes
    with torch.no_grad():
        assert relative_error(ceil(_x())[0], whole.backbone(_x())) < TOL
    native = convert_state_dict(theirs, "fastreid", "resbone")
    whole.load_state_dict(convert_state_dict(native, "resbone", "fastreid"), strict=True)
    with pytest.warns(UserWarning, match="timm has no re-identification head: dropped 6 tensors"):
        assert not any("head" in k for k in convert_state_dict(native, "resbone", "timm"))


# ---- detection and ambiguity -------------------------------------------------------------------------------------
def test_each_ecosystem_is_detected_from_its_own_names():
    assert detect_dialect(_torchreid("senet").state_dict()) == "torchreid"
    assert detect_dialect(_torchreid("resnet").state_dict()) == "torchreid"
    assert detect_dialect(_fastreid(False, True).state_dict()) == "fastreid"
    senet = pretrainedmodels_senet()
    cadene = senet.SENet(senet.SEResNetBottleneck, [1, 1, 1, 1], groups=1, reduction=16, dropout_p=None,
                         inplanes=64, input_3x3=False, downsample_kernel_size=1, downsample_padding=0)
    assert detect_dialect(cadene.state_dict()) == "pretrainedmodels"


def test_a_state_dict_two_dialects_read_differently_is_ambiguous():
    """Cadene's `last_linear` and torchreid's `classifier` side by side: each dialect explains all but the other's
    classifier, and they name the tensors differently, so detection refuses to guess and names both."""
    theirs = dict(_torchreid("senet").state_dict())
    theirs["last_linear.weight"], theirs["last_linear.bias"] = theirs["classifier.weight"], theirs["classifier.bias"]
    with pytest.raises(ValueError, match=r"ambiguous state dict: 'pretrainedmodels' or 'torchreid'"):
        detect_dialect(theirs)
    assert "fc.weight" in convert_state_dict(theirs, "torchreid", "resbone")  # naming the dialect settles it


def test_cli_converts_between_the_reid_ecosystems(tmp_path, capsys):
    """torchreid se_resnet50 file -> Cadene's names (detected, checked against --arch) -> loads strict into Cadene's
    SENet; the BNNeck head of a whole fast-reid model has no torchreid name: dropped with a warning."""
    from resbone.cli import main
    from resbone.convert import load_state_dict_file, save_state_dict_file

    src = save_state_dict_file(_torchreid("senet").state_dict(), tmp_path / "torchreid.pth")
    out = tmp_path / "cadene.pth"
    assert main(["convert", str(src), str(out), "--to", "cadene", "--arch", "se_resnet50",
                 "--set", "stage_blocks=[1, 1, 1, 1]", "--set", "num_classes=10"]) == 0
    assert "(torchreid, " in capsys.readouterr().out
    senet = pretrainedmodels_senet()
    cadene = senet.SENet(senet.SEResNetBottleneck, [1, 1, 1, 1], groups=1, reduction=16, dropout_p=None,
                         inplanes=64, input_3x3=False, downsample_kernel_size=1, downsample_padding=0, num_classes=10)
    cadene.load_state_dict(load_state_dict_file(out), strict=True)
    whole = fastreid_whole_model(_fastreid(True, False), feat_dim=2048, num_classes=5)  # IBN-a, as torchreid's
    src = save_state_dict_file(whole.state_dict(), tmp_path / "fastreid.pth")
    with pytest.warns(UserWarning, match="torchreid has no re-identification head"):
        assert main(["convert", str(src), str(tmp_path / "tr.pth"), "--from", "fast-reid", "--to", "torchreid"]) == 0
    assert not any(k.startswith(("heads.", "reid_head.")) for k in load_state_dict_file(tmp_path / "tr.pth"))


def test_load_checkpoint_refuses_to_guess_between_two_readings():
    theirs = dict(_torchreid("senet").state_dict())
    theirs["last_linear.weight"], theirs["last_linear.bias"] = theirs["classifier.weight"], theirs["classifier.bias"]
    ours = create_model("se_resnet50", stage_blocks=SHALLOW, num_classes=10)
    with pytest.raises(ValueError, match=r"ambiguous state dict: 'pretrainedmodels' or 'torchreid' each put"):
        load_checkpoint(ours, theirs)
    assert load_checkpoint(ours, theirs, dialect="torchreid", strict=False).unexpected == ["last_linear.weight",
                                                                                           "last_linear.bias"]
