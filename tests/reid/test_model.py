"""The BNNeck baseline equals fast-reid's EmbeddingHead (GeM or average pooling, BNNeck with a frozen bias,
bias-free Linear classifier, NECK_FEAT 'before') given the same weights: training logits and embedding, eval
embedding and gradients; GeM equals fast-reid's GeneralizedMeanPooling(P); initialisation as the baseline's."""
from __future__ import annotations

import pytest
import torch

from resbone import create_model
from resbone.reid.model import GeneralizedMeanPooling, ReidModel
from tests.reid.references import fastreid

POOL_TYPES = {"gem": "GeneralizedMeanPooling", "avg": "GlobalAvgPool"}


def _tiny(pooling: str = "gem", **kwargs) -> ReidModel:
    return ReidModel(5, "resnet18", pooling=pooling, base_channels=8, **kwargs)


def _their_head(ours: ReidModel, pooling: str):
    head = fastreid().EmbeddingHead(feat_dim=ours.num_features, embedding_dim=0, num_classes=ours.num_classes,
                                    neck_feat="before", pool_type=POOL_TYPES[pooling], cls_type="Linear", scale=1,
                                    margin=0, with_bnneck=True, norm_type="BN")
    with torch.no_grad():
        head.bottleneck[0].load_state_dict(ours.bottleneck.state_dict())
        head.weight.copy_(ours.classifier.weight)
    return head


def _randomize_neck(model: ReidModel, gen: torch.Generator) -> None:
    with torch.no_grad():  # values unlike the constant init, so a misplaced weight shows
        model.bottleneck.weight.copy_(torch.rand(model.num_features, generator=gen) + 0.5)
        model.bottleneck.bias.copy_(torch.randn(model.num_features, generator=gen) * 0.1)
        model.bottleneck.running_mean.copy_(torch.randn(model.num_features, generator=gen) * 0.1)
        model.bottleneck.running_var.copy_(torch.rand(model.num_features, generator=gen) + 0.5)
        model.classifier.weight.copy_(torch.randn_like(model.classifier.weight) * 0.1)


@pytest.mark.parametrize("pooling", ["gem", "avg"])
def test_head_equals_fastreids_embedding_head(pooling, rng):
    ours = _tiny(pooling)
    _randomize_neck(ours, rng)
    theirs = _their_head(ours, pooling)
    images = torch.randn(4, 3, 64, 32, generator=rng)
    maps = ours.backbone.forward_features(images).detach().requires_grad_(True)
    their_out = theirs.train()(maps, torch.zeros(4, dtype=torch.long))
    (their_out["pred_class_logits"].pow(2).sum() + their_out["features"].pow(3).sum()).backward()
    their_grads = maps.grad.clone(), theirs.bottleneck[0].weight.grad, theirs.weight.grad

    ours.backbone.forward_features = lambda x: maps  # the same maps feed our head
    maps.grad = None
    out = ours.train()(images)
    (out.logits.pow(2).sum() + out.embedding.pow(3).sum()).backward()
    torch.testing.assert_close(out.logits, their_out["pred_class_logits"])
    torch.testing.assert_close(out.embedding, their_out["features"])
    for mine, their in zip((maps.grad, ours.bottleneck.weight.grad, ours.classifier.weight.grad), their_grads):
        torch.testing.assert_close(mine, their)
    assert ours.bottleneck.bias.grad is None and theirs.bottleneck[0].bias.grad is None  # frozen in both
    torch.testing.assert_close(ours.bottleneck.running_mean, theirs.bottleneck[0].running_mean)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images), theirs.eval()(maps))


def test_gem_equals_fastreids_pooling(rng):
    x = torch.rand(2, 6, 8, 4, generator=rng) - 0.2  # some negatives: the clamp matters
    torch.testing.assert_close(GeneralizedMeanPooling(3.0)(x), fastreid().pooling.GeneralizedMeanPooling(3)(x))
    learnt = GeneralizedMeanPooling(4.0, trainable=True)
    torch.testing.assert_close(learnt(x), fastreid().pooling.GeneralizedMeanPoolingP(4)(x))
    assert [name for name, _ in learnt.named_parameters()] == ["p"]


def test_training_embedding_is_before_the_bn_and_eval_after(rng):
    model = _tiny("avg")
    _randomize_neck(model, rng)
    images = torch.randn(4, 3, 64, 32, generator=rng)
    pooled = model.backbone.forward_features(images).mean((2, 3))
    torch.testing.assert_close(model.train()(images).embedding, pooled)
    model.eval()
    with torch.no_grad():
        pooled = model.backbone.forward_features(images).mean((2, 3))
        torch.testing.assert_close(model(images), model.bottleneck(pooled))


def test_initialisation_and_frozen_bias_as_the_baseline():
    torch.manual_seed(0)
    model = ReidModel(751, "resnet18")
    assert torch.equal(model.bottleneck.weight, torch.ones(512))
    assert torch.equal(model.bottleneck.bias, torch.zeros(512))
    assert not model.bottleneck.bias.requires_grad and model.bottleneck.weight.requires_grad
    assert model.classifier.bias is None
    assert model.classifier.weight.detach().std().item() == pytest.approx(0.001, rel=0.02)
    no_neck = ReidModel(10, "resnet18", bnneck=False)
    assert not hasattr(no_neck, "bottleneck") and no_neck.classifier.bias is not None


def test_default_backbone_is_resnet50_ibn_a_with_last_stride_1():
    model = ReidModel(3)
    reference = create_model("resnet50_ibn_a", last_stride=1, num_classes=None)
    assert model.backbone.state_dict().keys() == reference.state_dict().keys()
    assert model.backbone.layer4[0].conv2.stride == (1, 1)  # torchvision style: the stride sits in the 3x3
    with torch.no_grad():
        assert model.backbone.eval().forward_features(torch.zeros(1, 3, 64, 32)).shape == (1, 2048, 4, 2)  # 1/16


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"pooling must be one of \('gem', 'avg'\)"):
        _tiny("max")
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ReidModel(1, "resnet18")
    with pytest.raises(TypeError, match="backbone must be a registered model name"):
        ReidModel(4, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="mobilenet_v2 has no last_stride option.*pass last_stride=None"):
        ReidModel(4, "mobilenet_v2")
    assert ReidModel(4, "mobilenet_v2", last_stride=None).num_features == 1280
    with pytest.raises(ValueError, match="apply to a backbone built by name"):
        ReidModel(4, create_model("resnet18", num_classes=None), base_channels=8)
    with pytest.raises(ValueError, match="p must be a positive number"):
        GeneralizedMeanPooling(0)


def test_whole_model_equals_fastreids_baseline_with_the_same_weights(rng):
    """fast-reid's Baseline (its IBN ResNet, last stride 1, EmbeddingHead with BNNeck) and ReidModel over
    resnet50_ibn_a: the backbone read from fast-reid's checkpoint, the head's tensors copied; eval embeddings
    equal. fast-reid pools its stem in ceil mode (resbone/models/reid.py), hence stem_pool='ceil'."""
    from resbone import load_checkpoint
    from tests.helpers.references import fastreid_backbone, fastreid_whole_model, randomize

    resnet = fastreid_backbone()
    torch.manual_seed(0)
    backbone = resnet.ResNet(1, "BN", True, False, False, resnet.Bottleneck, [1, 1, 1, 1], [0, 0, 0, 0])
    whole = randomize(fastreid_whole_model(backbone, feat_dim=2048, num_classes=5))
    ours = ReidModel(5, "resnet50_ibn_a", pooling="avg", stem_pool="ceil", stage_blocks=(1, 1, 1, 1)).eval()
    assert load_checkpoint(ours.backbone, whole.backbone.state_dict()).ok
    ours.bottleneck.load_state_dict(whole.heads.bottleneck[0].state_dict())
    images = torch.randn(2, 3, 64, 32, generator=rng)
    with torch.no_grad():
        expected = whole(images.clone())  # fast-reid normalises its input in place
        torch.testing.assert_close(ours(images), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_onnx_export_gives_the_eval_embedding(tmp_path, rng):
    """resbone.deploy.onnx.export_onnx of a ReidModel: onnxruntime's `embedding` equals the eval forward."""
    import onnxruntime

    from resbone.deploy.onnx import export_onnx

    model = _tiny("gem")
    _randomize_neck(model, rng)
    model.train()
    path = export_onnx(model, tmp_path / "reid.onnx", input_size=(64, 32))
    assert model.training  # the caller's mode is kept
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    images = torch.randn(3, 3, 64, 32, generator=rng)
    with torch.no_grad():
        expected = model.eval()(images)
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
