"""Quantization-aware training (resbone.deploy.quantize_qat), torchvision's train_quantization.py recipe in FX
graph mode: on a trained classifier its int8 model keeps the float model's accuracy at least as well as
post-training quantization does, and the schedule freezes batch-norm statistics and observers when asked.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from resbone.deploy import quantize, quantize_qat
from resbone.deploy.qat import fine_tune
from resbone.deploy.quantize import _prepare, _with_batch_norms
from resbone.factory import create_model


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


@pytest.mark.slow
def test_qat_int8_matches_or_beats_post_training_int8(trained, shape_data):
    model, calibration, val_x, val_y = trained
    train_x, train_y = shape_data[:2]
    before = copy.deepcopy(model.state_dict())
    g = torch.Generator().manual_seed(1)
    order = torch.randperm(len(train_y), generator=g)  # shuffled: a one-class batch skews train-mode BN
    loader = list(zip(train_x[order].split(32), train_y[order].split(32)))
    qat = quantize_qat(model, loader, steps=24)
    ptq = quantize(model, calibration)
    with torch.no_grad():
        ref, qat_out, ptq_out = model(val_x), qat(val_x), ptq(val_x)
    float_acc, qat_acc, ptq_acc = _accuracy(ref, val_y), _accuracy(qat_out, val_y), _accuracy(ptq_out, val_y)
    agreement = float((qat_out.argmax(1) == ref.argmax(1)).float().mean())
    print(f"\nshape crops ({len(val_y)}): Acc@1 float32 {float_acc:.3f}, post-training int8 {ptq_acc:.3f}, QAT "
          f"int8 {qat_acc:.3f} (top-1 agreement with float32 {agreement:.3f}); losses {qat.qat_losses[0]:.3f} -> "
          f"{qat.qat_losses[-1]:.3f}")
    assert float_acc > 0.6, "the classifier did not learn: the comparison would prove nothing"
    one_crop = 1 / len(val_y)
    assert qat_acc >= ptq_acc - one_crop and qat_acc >= float_acc - 0.03
    third = len(qat.qat_losses) // 3  # it learns through the fake quantization (the float model is undertrained)
    assert sum(qat.qat_losses[-third:]) < sum(qat.qat_losses[:third])
    assert len(qat.qat_losses) == 24 and qat.backend == "x86" and qat.float_parts == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the float model untouched


def _prepared_resnet18(x: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    return _prepare(_with_batch_norms(create_model("resnet18", num_classes=3)).train(), x, "x86", qat=True)


def test_schedule_freezes_batch_norm_statistics_and_observers(rng):
    x, y = torch.randn(4, 3, 32, 32, generator=rng), torch.tensor([0, 1, 2, 0])
    batches = [(x, y)] * 3
    prepared = _prepared_resnet18(x)
    stats = {k: v.clone() for k, v in prepared.state_dict().items() if k.endswith("running_mean")}
    optimizer = torch.optim.SGD(prepared.parameters(), lr=1e-4)
    fine_tune(prepared, batches, optimizer, loss=F.cross_entropy, freeze_bn_at=0, freeze_observers_at=3)
    # frozen from the first step: no running statistic moved, though 3 batches went through in train mode
    assert all(torch.equal(stats[k], v) for k, v in prepared.state_dict().items() if k in stats)
    fakes = [m for m in prepared.modules() if hasattr(m, "observer_enabled")]
    assert fakes and all(int(m.observer_enabled[0]) == 1 for m in fakes)  # step 3 never came: still observing

    prepared = _prepared_resnet18(x)
    fine_tune(prepared, batches, torch.optim.SGD(prepared.parameters(), lr=1e-4), loss=F.cross_entropy,
              freeze_bn_at=3, freeze_observers_at=1)
    assert any(not torch.equal(stats[k], v) for k, v in prepared.state_dict().items() if k in stats)
    assert all(int(m.observer_enabled[0]) == 0 for m in prepared.modules() if hasattr(m, "observer_enabled"))


def test_qat_bad_input_errors(rng):
    model = create_model("resnet18", num_classes=3)
    batch = (torch.randn(2, 3, 32, 32, generator=rng), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        quantize_qat(model, [batch], steps=0)
    with pytest.raises(ValueError, match="freeze_bn_after must be an int in 0..steps"):
        quantize_qat(model, [batch], steps=2, freeze_bn_after=5)
    with pytest.raises(ValueError, match="lr must be"):
        quantize_qat(model, [batch], steps=2, lr=0)
    with pytest.raises(TypeError, match=r"batch 0 must be an \(images"):
        quantize_qat(model, [batch[0]], steps=1)
    with pytest.raises(TypeError, match="loader must be"):
        quantize_qat(model, batch[0], steps=1)
    with pytest.raises(ValueError, match="gave no batch after 1"):
        quantize_qat(model, (b for b in [batch]), steps=2)
    with pytest.raises(ValueError, match="backend must be"):
        quantize_qat(model, [batch], steps=1, backend="tensorrt")
