"""Inference helpers against independent references: torchvision's model and onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision
from torch import nn

from resbone import ResNet, create_model
from resbone.deploy import export_onnx, fuse_conv_norm, prepare_for_inference
from tests.helpers import randomize_norms


@pytest.mark.parametrize("name,kwargs", [("resnet18", {}), ("resnet50d", {}),
                                         ("resnet50", dict(norm_cfg=dict(type="FrozenBN")))])
def test_fused_model_equals_the_unfused_one_and_has_no_norms_left(name, kwargs):
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, **kwargs)).eval()
    fused = fuse_conv_norm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4
    norms = (nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d)
    assert not any(isinstance(m, norms) for m in fused.modules())
    assert any(isinstance(m, norms) for m in model.modules())  # the original is untouched


def test_prepared_model_equals_torchvision():
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18(weights=None)).eval()
    ours = create_model("resnet18")
    ours.load_state_dict(reference.state_dict())
    fast = prepare_for_inference(ours, channels_last=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        got = fast(x.to(memory_format=torch.channels_last))
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4


@pytest.mark.parametrize("num_classes", [10, None])
def test_onnx_export_runs_in_onnxruntime_with_equal_outputs(tmp_path, num_classes):
    torch.manual_seed(0)
    model = randomize_norms(ResNet(18, num_classes=num_classes, out_indices=(2, 3))).eval()
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)  # a batch size other than the traced one: the batch axis is dynamic
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.abs(g - e.numpy()).max() / np.abs(e.numpy()).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left behind


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        export_onnx(ResNet(18), tmp_path)
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(ResNet(18), tmp_path / "m.onnx", input_size=(8,))
    with pytest.raises(TypeError, match="nn.Module"):
        fuse_conv_norm("resnet18")


def test_export_command_writes_onnx_with_the_checkpoint_weights(tmp_path):
    from resbone.cli import main

    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18(weights=None, num_classes=7)).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "r18.onnx"
    assert main(["export", "resnet18", str(out), "--checkpoint", str(tmp_path / "r18.pth"), "--fuse",
                 "--input-size", "64", "64", "--set", "num_classes=7"]) == 0
    x = torch.randn(2, 3, 64, 64)
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    assert main(["export", "resnet18", str(tmp_path / "x.onnx"), "--set", "depht=18"]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_export_leaves_the_callers_model_in_its_own_modes(tmp_path):
    # export_onnx used to leave a model that was training in eval mode (torch.onnx.export restores it)
    model = ResNet(18, num_classes=None, frozen_stages=1).train()
    modes = {name: m.training for name, m in model.named_modules()}
    assert modes["layer2"] and not modes["layer1"]  # frozen_stages=1: mixed modes to preserve
    export_onnx(model, tmp_path / "m.onnx", input_size=(32, 32))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert (tmp_path / "m.onnx").stat().st_size > 0
