"""resbone.engine.accelerate: the compiled network (model.forward_network) computes the eager losses and
gradients, channels_last too; a size within the padded bucket reuses the compiled graph and a new bucket
recompiles once (symbolic sizes), not at every step; AMP dtypes are chosen and refused with clear errors.

The equality tests compile with `aot_eager` (dynamo capture + AOT autograd's forward/backward graphs,
no C++ build: seconds); the inductor one is marked slow."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from resbone.detection.defaults import detector_cfg
from resbone.detection.detector import build_detector
from resbone.engine.accelerate import (
    accelerate_model,
    amp_dtype,
    autocast,
    compile_network,
    cpu_has_native_bf16,
    to_channels_last,
)
from tests.helpers.detectors import TinyDetector


def _tiny_fcos():
    torch.manual_seed(0)
    cfg = detector_cfg({
        "INPUT": {"MIN_SIZE_TRAIN": (64,), "MAX_SIZE_TRAIN": 200, "MIN_SIZE_TEST": 64, "MAX_SIZE_TEST": 200},
        "DATALOADER": {"SIZE_DIVISIBILITY": 32},
        "MODEL": {"BACKBONE": {"CONV_BODY": "R-18-FPN-RETINANET", "FREEZE_CONV_BODY_AT": 0},
                  "RESNETS": {"BACKBONE_OUT_CHANNELS": 32, "RES2_OUT_CHANNELS": 64, "STEM_FUNC": "StemWithGN",
                              "TRANS_FUNC": "BottleneckWithGN"},
                  "RETINANET": {"USE_C5": False},
                  "FCOS": {"NUM_CLASSES": 4, "NUM_CONVS": 1, "FPN_STRIDES": [8, 16, 32],
                           "SIZES_OF_INTEREST": [[-1, 32], [32, 64], [64, 100000000.0]],
                           "CENTER_SAMPLING_RADIUS": 1.5, "IOU_LOSS_TYPE": "giou", "NORM_REG_TARGETS": True,
                           "CENTERNESS_ON_REG": True}}})
    return build_detector(cfg).train()


def _batch(width: int = 80, height: int = 64):
    g = torch.Generator().manual_seed(width)
    images = [torch.rand(3, height, width, generator=g) for _ in range(2)]
    targets = [dict(boxes=torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]]),
                    labels=torch.tensor([1, 3])),
               dict(boxes=torch.tensor([[10.0, 12.0, 50.0, 60.0]]), labels=torch.tensor([2]))]
    return images, targets


def _losses_and_grads(model):
    images, targets = _batch()
    model.zero_grad(set_to_none=True)
    losses = model(images, targets)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def _assert_same(eager, other, *, rtol: float, atol: float) -> None:
    (losses, grads), (other_losses, other_grads) = eager, other
    assert losses.keys() == other_losses.keys() and grads.keys() == other_grads.keys()
    for key in losses:
        torch.testing.assert_close(other_losses[key], losses[key], rtol=rtol, atol=atol, msg=key)
    # Each gradient relative to its own largest entry, floored at 1e-3 of the largest of all: the biases of
    # the convs in front of GroupNorm have mathematically zero gradients (~1e-9 of rounding noise here).
    floor = 1e-3 * max(float(g.abs().max()) for g in grads.values())
    for name in grads:
        scale = max(float(grads[name].abs().max()), floor)
        torch.testing.assert_close(other_grads[name] / scale, grads[name] / scale, rtol=rtol, atol=atol, msg=name)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_network_gives_the_eager_losses_gradients_and_detections():
    model = _tiny_fcos()
    eager = _losses_and_grads(model)
    compiled = compile_network(copy.deepcopy(model), backend="aot_eager")
    assert type(compiled) is type(model) and compiled.state_dict().keys() == model.state_dict().keys()
    _assert_same(eager, _losses_and_grads(compiled), rtol=1e-4, atol=1e-5)
    images, _ = _batch()
    with torch.no_grad():  # evaluation: the same detections (from a head confident enough to give some)
        for detector in (model, compiled):
            detector.head.cls_logits.bias.fill_(0.0)
        for expected, got in zip(model.eval()(images), compiled.eval()(images)):
            assert torch.equal(got["labels"], expected["labels"]) and len(expected["boxes"]) > 0
            torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)


def test_channels_last_gives_the_eager_losses_and_gradients():
    model = _tiny_fcos()
    eager = _losses_and_grads(model)
    fast = to_channels_last(copy.deepcopy(model))
    assert fast.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(eager, _losses_and_grads(fast), rtol=1e-4, atol=1e-4)  # other conv kernels: other rounding


@pytest.mark.slow
def test_inductor_compiled_network_gives_the_eager_losses_and_gradients():
    model = _tiny_fcos()
    eager = _losses_and_grads(model)
    fast = accelerate_model(copy.deepcopy(model), compile=True, channels_last=True)
    _assert_same(eager, _losses_and_grads(fast), rtol=1e-3, atol=1e-4)


def test_same_size_bucket_reuses_the_graph_and_a_new_bucket_recompiles_once():
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = compile_network(_tiny_fcos(), backend=counting_backend)

    def compiles_after(width: int) -> int:
        images, targets = _batch(width)
        sum(model(images, targets).values()).backward()
        return len(graphs)

    first = compiles_after(80)  # padded to 64 x 96
    assert first >= 1
    assert compiles_after(70) == first  # 64 x 70 pads to the same 64 x 96 bucket: no recompilation
    second = compiles_after(120)  # 64 x 128: one recompilation, with symbolic sizes
    assert second > first
    assert compiles_after(150) == second  # 64 x 160: the symbolic graph serves it


def test_amp_dtypes_follow_the_device_and_bad_names_are_refused():
    assert amp_dtype("cpu", "auto") == torch.bfloat16
    assert amp_dtype("cuda", "auto") == torch.float16
    assert amp_dtype("cpu", "float16") == torch.float16
    with pytest.raises(ValueError, match="SOLVER.AMP_DTYPE must be 'auto' or one of"):
        amp_dtype("cpu", "fp8")
    with warnings.catch_warnings(record=True) as caught, autocast("cpu", enabled=True, dtype="auto"):
        warnings.simplefilter("always")
        out = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4))
    assert out.dtype == torch.bfloat16
    # emulated bf16 is slower than fp32: the user is told so
    assert any("much slower" in str(w.message) for w in caught) == (not cpu_has_native_bf16())
    with autocast("cpu", enabled=False):
        assert torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4)).dtype == torch.float32


def test_models_without_a_network_method_are_refused():
    with pytest.raises(TypeError, match="has no forward_network"):
        accelerate_model(TinyDetector(), compile=True)
    assert isinstance(accelerate_model(TinyDetector()), TinyDetector)  # nothing asked, nothing done


def test_trainer_applies_model_channels_last_and_compile(tmp_path):
    from resbone.detection.task import DetectionTrainer as Trainer
    from tests.helpers.detectors import tiny_cfg

    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    trainer = Trainer(tiny_cfg(data, out, "MODEL.CHANNELS_LAST", "True"), model=_tiny_fcos())
    try:
        assert trainer.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        trainer.close()
    with pytest.raises(TypeError, match="TinyDetector has no forward_network"):
        Trainer(tiny_cfg(data, str(tmp_path / "out2"), "MODEL.COMPILE", "True"), model=TinyDetector())
