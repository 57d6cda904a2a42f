"""Acc@1 / Acc@5 equal torchvision's references on the same logits (their `accuracy`, copied below as written,
averaged over batches by batch size as their MetricLogger's global_avg does); per-class accuracy and the
confusion matrix equal hand counts; the confusion PNG is written."""
from __future__ import annotations

import os

import pytest
import torch

from resbone.classification.evaluation import accuracy, classification_metrics, plot_confusion_matrix


def reference_accuracy(output, target, topk=(1,)):
    """torchvision references/classification/utils.py `accuracy`, as written there."""
    with torch.inference_mode():
        maxk = max(topk)
        batch_size = target.size(0)
        if target.ndim == 2:
            target = target.max(dim=1)[1]

        _, pred = output.topk(maxk, 1, True, True)
        pred = pred.t()
        correct = pred.eq(target[None])

        res = []
        for k in topk:
            correct_k = correct[:k].flatten().sum(dtype=torch.float32)
            res.append(correct_k * (100.0 / batch_size))
        return res


def _reference_global(logits, target, batch_size):
    """train.py's evaluate: metric_logger.meters["acc1"].update(acc1.item(), n=batch_size), then global_avg."""
    totals, count = [0.0, 0.0], 0
    for start in range(0, len(target), batch_size):
        acc1, acc5 = reference_accuracy(logits[start:start + batch_size], target[start:start + batch_size], (1, 5))
        n = len(target[start:start + batch_size])
        totals = [totals[0] + acc1.item() * n, totals[1] + acc5.item() * n]
        count += n
    return totals[0] / count, totals[1] / count


@pytest.mark.parametrize("soft", [False, True])
def test_acc1_acc5_equal_torchvisions_references(soft):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(103, 10, generator=g)
    target = torch.randint(0, 10, (103,), generator=g)
    logits[:40] += 3 * torch.nn.functional.one_hot(target[:40], 10)  # some right, some not
    labels = torch.nn.functional.one_hot(target, 10).float() * 0.8 + 0.02 if soft else target
    acc1, acc5 = accuracy(logits, labels, (1, 5))
    ref1, ref5 = reference_accuracy(logits, labels, (1, 5))
    assert acc1 == pytest.approx(ref1.item(), abs=1e-4) and acc5 == pytest.approx(ref5.item(), abs=1e-4)
    assert 0 < acc1 < acc5 < 100
    metrics = classification_metrics(logits, target, [str(i) for i in range(10)])
    glob1, glob5 = _reference_global(logits, target, batch_size=32)
    assert metrics["Acc@1"] == pytest.approx(glob1, abs=1e-4) and metrics["Acc@5"] == pytest.approx(glob5, abs=1e-4)


def test_per_class_accuracy_and_confusion_are_the_hand_counts(tmp_path):
    logits = torch.tensor([[5., 0, 0], [5, 0, 0], [0, 5, 0], [5, 0, 0], [0, 0, 5], [0, 5, 0]])
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(logits, target, ["cat", "dog", "fox"])
    assert metrics["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert metrics["per_class"] == {"cat": 100.0, "dog": 50.0, "fox": 50.0}
    assert metrics["Acc@1"] == pytest.approx(400 / 6) and "Acc@5" not in metrics  # top-5 of 3 classes means nothing
    path = plot_confusion_matrix(metrics["confusion"], ["cat", "dog", "fox"], str(tmp_path / "c.png"))
    assert os.path.getsize(path) > 1000 and os.listdir(tmp_path) == ["c.png"]
