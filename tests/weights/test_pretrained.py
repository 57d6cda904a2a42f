"""`pretrained=` and every scheme, one test per publisher: each file is made by the publisher's own code with
random weights, served from 127.0.0.1 under its published URL, and the model built here must give the
reference model's outputs (or hold its exact tensors)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from resbone import build_backbone, create_model
from resbone.convert import convert_state_dict
from resbone.convert.io import save_state_dict_file
from tests.helpers.references import mmpretrain_backbones, pretrainedmodels_senet
from tests.weights.conftest import torch_bytes

TV18 = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def tv18(served, any_hash):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    served.add(TV18, torch_bytes(reference.state_dict()))
    return reference


def test_num_classes_other_than_the_files_drops_the_classifier_with_one_note(tv18):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_model("resnet18", pretrained=True, num_classes=10, progress=False)
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1 and "classifier" in notes[0], notes
    assert model.fc.out_features == 10
    assert torch.equal(model.conv1.weight, tv18.conv1.weight)


def test_features_only_with_pretrained(tv18):
    model = create_model("resnet18", pretrained="tv_in1k", features_only=True, progress=False).eval()
    x = torch.randn(1, 3, 64, 64)
    body = torch.nn.Sequential(*list(tv18.children())[:-2])
    torch.testing.assert_close(model(x)[-1], body(x), rtol=1e-4, atol=1e-4)


def test_a_name_without_published_weights_says_so_and_lists_the_tags():
    with pytest.raises(KeyError, match=r"'se_resnet50_ibn_a' has no published weights.*resnet50_ibn_a"):
        create_model("se_resnet50_ibn_a", pretrained=True)
    with pytest.raises(KeyError, match=r"resnet18 has no weights tagged 'in22k'; its tags: mmcls_in1k, tv_in1k"):
        create_model("resnet18", pretrained="in22k")


def test_timm_hf_hub_file(served):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    reference = timm.create_model("resnet18d").eval()
    served.add("https://huggingface.co/timm/resnet18d.ra2_in1k/resolve/main/model.safetensors",
               save(reference.state_dict()))
    x = torch.randn(1, 3, 64, 64)
    for model in (create_model("resnet18d", pretrained=True, progress=False),
                  create_model("resnet18d", checkpoint="hf-hub:timm/resnet18d.ra2_in1k")):
        torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-4, atol=1e-4)
    assert len(served.requests) == 1


def test_open_mmlab_file_through_init_cfg(served, any_hash):
    reference = mmpretrain_backbones().ResNetV1c(depth=18, out_indices=(3,))
    reference.eval()  # mmpretrain's train() returns None
    served.add("https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth",
               torch_bytes({"state_dict": reference.state_dict()}))
    model = build_backbone(dict(type="ResNetV1c", depth=18, out_indices=(3,), norm_eval=False,
                                init_cfg=dict(type="Pretrained", checkpoint="open-mmlab://resnet18_v1c"))).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x)[-1], reference(x)[-1], rtol=1e-4, atol=1e-4)


def test_mmcls_and_mmpretrain_names(served, any_hash):
    reference = mmpretrain_backbones().ResNetV1d(depth=50, out_indices=(3,))
    reference.eval()
    served.add("https://download.openmmlab.com/mmclassification/v0/resnet/"
               "resnetv1d50_b32x8_imagenet_20210531-db14775a.pth", torch_bytes({"state_dict": reference.state_dict()}))
    x = torch.randn(1, 3, 64, 64)
    for scheme in ("mmcls://", "mmpretrain://"):
        model = build_backbone(dict(type="ResNetV1d", depth=50, out_indices=(3,), norm_eval=False,
                                    pretrained=f"{scheme}resnet50_v1d")).eval()
        torch.testing.assert_close(model(x)[-1], reference(x)[-1], rtol=1e-4, atol=1e-4)
    assert len(served.requests) == 1


def test_detectron2_scheme(served, tmp_path):
    native = create_model("resnet18", num_classes=None).state_dict()
    native = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in native.items()}
    pickle = save_state_dict_file(convert_state_dict(native, "resbone", "detectron2"), tmp_path / "R-18.pkl")
    served.add("https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/test/R-18.pkl", pickle.read_bytes())
    model = create_model("resnet18", num_classes=None, checkpoint="detectron2://ImageNetPretrained/test/R-18.pkl")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in native.items())


def test_cadene_se_resnet50(served):
    reference = pretrainedmodels_senet().se_resnet50(num_classes=1000, pretrained=None).eval()
    served.add("http://data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth",
               torch_bytes(reference.state_dict()))
    model = create_model("se_resnet50", pretrained=True, progress=False).eval()
    x = torch.randn(1, 3, 224, 224)  # Cadene's head is a fixed 7x7 average pool
    torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)


def test_torchvision_weights_argument_means_the_same_file(tv18):
    model = create_model("resnet18", weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1, progress=False)
    assert torch.equal(model.conv1.weight, tv18.conv1.weight)
    with pytest.raises(ValueError, match=r"IMAGENET1K_V3.*IMAGENET1K_V1"):
        create_model("resnet18", weights="IMAGENET1K_V3")


def test_fast_reid_bot_model_gives_the_backbones_features(served):
    from tests.helpers.references import fastreid_backbone, fastreid_whole_model, randomize

    resnet = fastreid_backbone()  # as fast-reid's configs/Market1501/bagtricks_R50.yml builds it
    backbone = resnet.ResNet(1, "BN", False, False, False, resnet.Bottleneck, [3, 4, 6, 3], [0, 0, 0, 0])
    whole = randomize(fastreid_whole_model(backbone, feat_dim=2048, num_classes=751))
    served.add("https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/market_bot_R50.pth",
               torch_bytes({"model": whole.state_dict()}))
    with pytest.warns(UserWarning, match="re-identification head"):
        model = create_model("resnet50", pretrained="fastreid_market_bot", progress=False).eval()
    x = torch.randn(1, 3, 128, 64)
    torch.testing.assert_close(model.forward_features(x), whole.backbone(x), rtol=1e-4, atol=1e-4)


def test_mmcls_classifier_file_loads_whole(served, any_hash):
    """mmpretrain's ImageClassifier file (backbone.* + head.fc.*): the whole classifier, strict."""
    backbone = mmpretrain_backbones().ResNet(depth=18)
    backbone.eval()
    fc = torch.nn.Linear(512, 1000)
    state = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
             **{f"head.fc.{k}": v for k, v in fc.state_dict().items()}}
    served.add("https://download.openmmlab.com/mmclassification/v0/resnet/resnet18_8xb32_in1k_20210831-fbbb1da6.pth",
               torch_bytes({"meta": {}, "state_dict": state}))
    model = create_model("resnet18", pretrained="mmcls_in1k", progress=False).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), fc(backbone(x)[-1].mean((2, 3))), rtol=1e-4, atol=1e-4)


def test_resbone_convert_reads_an_address(served, any_hash, tmp_path, tv18):
    from resbone.cli import main
    from resbone.convert import load_state_dict_file

    out = tmp_path / "r18_timm.safetensors"
    assert main(["convert", "torchvision://resnet18", str(out), "--to", "timm"]) == 0
    assert torch.equal(load_state_dict_file(out)["conv1.weight"], tv18.conv1.weight)


def test_a_classification_config_fine_tunes_the_published_weights_with_five_classes(tv18):
    """MODEL.PRETRAINED True: the served torchvision file in the body, a new 5-class classifier (issue 19)."""
    from resbone.classification.config import load_cfg
    from resbone.classification.task import build_classifier

    cfg = load_cfg(None, ["MODEL.NAME", "resnet18", "MODEL.PRETRAINED", "True"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one note about the classifier, tested above
        model = build_classifier(cfg, 5)
    assert model.fc.out_features == 5
    for key, value in tv18.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
