"""prepare_for_inference (folded norms, channels_last, torch.compile with freezing) computes what the eager
model computes: a classifier's logits against torchvision's, a detector's detections against its own
eager detections."""
from __future__ import annotations

import pytest
import torch
import torchvision

from resbone import create_model
from resbone.deploy import prepare_for_inference
from resbone.deploy.inference import compile_options, is_detector
from tests.helpers import randomize_norms
from tests.helpers.fcos import SIZE, assert_same_detections, tiny_fcos


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, SIZE, SIZE, generator=g), torch.rand(3, 64, SIZE, generator=g)]


def test_prepared_classifier_equals_torchvision():
    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18(weights=None)).eval()
    ours = create_model("resnet18")
    ours.load_state_dict(reference.state_dict())
    fast = prepare_for_inference(ours, channels_last=True)
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        got = fast(x.to(memory_format=torch.channels_last))
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4


def test_prepared_detector_gives_the_eager_detections():
    model = tiny_fcos()
    assert is_detector(model) and not is_detector(create_model("resnet18"))
    fast = prepare_for_inference(model)
    assert fast is not model and not any(p.requires_grad for p in fast.parameters())
    with torch.inference_mode():
        expected, got = model(_images()), fast(_images())
    assert_same_detections(got, expected)


def test_bad_compile_mode_is_refused():
    with pytest.raises(ValueError, match="compile mode"):
        prepare_for_inference(create_model("resnet18"), compile=True, mode="fastest")
    with pytest.raises(ValueError, match="compile mode"):
        compile_options("fast")
    assert compile_options("max-autotune-no-cudagraphs")["freezing"] is True
    with pytest.raises(TypeError, match="nn.Module"):
        prepare_for_inference("resnet18")


@pytest.mark.slow
def test_compiled_detector_gives_the_eager_detections():
    # (a compiled classifier against torchvision: tests/bench/test_backbone.py, through the bench's output gap)
    detector = tiny_fcos()
    with torch.inference_mode():
        assert_same_detections(prepare_for_inference(detector, compile=True)(_images()), detector(_images()))
