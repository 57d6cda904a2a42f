"""Quantization-aware training: a classifier fine-tuned with fake-quantized weights and activations, then
converted to the same int8 graph as post-training `resbone.deploy.quantize` makes.

Anchor: torchvision's `references/classification/train_quantization.py` (how its quantized MobileNetV2 was
trained): prepare for QAT (FX graph mode: `prepare_qat_fx` with the backend's default QAT qconfig), SGD with
lr 1e-4, momentum 0.9, weight decay 1e-4, batch-norm statistics frozen (`freeze_bn_stats`) after some
epochs and the observers disabled (`disable_observer`) after a few more, so that the last steps fine-tune
the weights against fixed quantization ranges; then `convert_fx`. The torch API itself is chosen in
resbone.deploy.quantize (`_prepare(qat=True)` / `_convert`). Reference test: tests/deploy/test_qat.py (the
converted int8 model computes what the fake-quantized training graph computes; on a trained classifier its
accuracy matches post-training quantization's; the schedule freezes at the steps asked for).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from resbone.deploy.inference import is_detector
from resbone.deploy.quantize import _check_backend, _convert, _prepare, _quiet, _with_batch_norms
from resbone.utils.checks import is_int

__all__ = ["fine_tune", "quantize_qat"]


def _labelled_batches(loader: Any, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` (images, labels) pairs, going over `loader` again as often as needed (an epoch per pass)."""
    if isinstance(loader, (torch.Tensor, str, bytes)) or not hasattr(loader, "__iter__"):
        raise TypeError(f"quantize_qat's loader must be a DataLoader or a sequence of (images, labels) batches, "
                        f"got {type(loader).__name__}")
    served = 0
    while served < steps:
        before = served
        for item in itertools.islice(loader, steps - served):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], torch.Tensor)
                    and item[0].dim() == 4 and isinstance(item[1], torch.Tensor)):
                raise TypeError(f"quantize_qat's batch {served} must be an (images (N, C, H, W), labels) pair, "
                                f"got {type(item).__name__}")
            served += 1
            yield item[0], item[1]
        if served == before:
            raise ValueError(f"quantize_qat's loader gave no batch after {served} (a generator runs once: give a "
                             "DataLoader or a list)")


def _check_steps(steps: int, freeze_bn_after: int | None, freeze_observers_after: int | None) -> tuple[int, int]:
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    # torchvision freezes BN after 3 epochs and the observers after 4: the same order over `steps`
    chosen = (steps // 2 if freeze_bn_after is None else freeze_bn_after,
              (2 * steps) // 3 if freeze_observers_after is None else freeze_observers_after)
    for name, value in zip(("freeze_bn_after", "freeze_observers_after"), chosen):
        if not is_int(value) or not 0 <= value <= steps:
            raise ValueError(f"{name} must be an int in 0..steps ({steps}) or None, got {value!r}")
    return chosen


def quantize_qat(model: nn.Module, loader: Any, *, steps: int, backend: str = "x86", lr: float = 1e-4,
                 momentum: float = 0.9, weight_decay: float = 1e-4, freeze_bn_after: int | None = None,
                 freeze_observers_after: int | None = None,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> nn.Module:
    """An int8 copy of a classifier fine-tuned by quantization-aware training (CPU; `model` is left as it is).

    loader: a DataLoader or a list of (images, labels) batches, gone over again until `steps` SGD steps are
    made (torchvision's recipe: lr 1e-4, momentum 0.9, weight decay 1e-4). Batch-norm statistics freeze from
    step `freeze_bn_after` (default steps // 2) and the quantization ranges from `freeze_observers_after`
    (default 2 * steps // 3); until then every norm trains, FrozenBatchNorm2d too (as an nn.BatchNorm2d, the
    form torch's Conv+BN QAT modules take). backend: as `quantize`'s. The result is what `quantize` returns (`backend`,
    `float_parts`; save it with `save_quantized`) and carries `qat_losses`, the loss of each step."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_qat expects an nn.Module, got {type(model).__name__}")
    if is_detector(model):
        raise TypeError("quantize_qat fine-tunes classifiers and backbones with labels; quantize a detector "
                        "after training with resbone.deploy.quantize")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    freeze_bn_at, freeze_observers_at = _check_steps(steps, freeze_bn_after, freeze_observers_after)
    backend = _check_backend(backend)
    batches = _labelled_batches(loader, steps)
    images, labels = next(batches)
    prepared = _prepare(_with_batch_norms(model).cpu().train(), images, backend, qat=True)
    optimizer = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    losses = fine_tune(prepared, itertools.chain([(images, labels)], batches), optimizer, loss=loss,
                       freeze_bn_at=freeze_bn_at, freeze_observers_at=freeze_observers_at)
    quantized = _convert(prepared, backend)
    quantized.qat_losses = losses
    return quantized


def fine_tune(prepared: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              optimizer: torch.optim.Optimizer, *, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              freeze_bn_at: int, freeze_observers_at: int) -> list[float]:
    """One optimizer step per batch on a QAT-prepared graph; batch-norm statistics freeze from step
    `freeze_bn_at`, the observers (quantization ranges) from `freeze_observers_at`. The losses, per step."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats
    from torch.ao.quantization import disable_observer

    losses = []
    prepared.train()
    for step, (images, labels) in enumerate(batches):
        if step == freeze_bn_at:
            prepared.apply(freeze_bn_stats)
        if step == freeze_observers_at:
            prepared.apply(disable_observer)
        with _quiet():
            value = loss(prepared(images), labels)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    return losses
