"""Classification metrics: Acc@1 / Acc@5 as torchvision's references compute and print them (percent), the
accuracy of each class, the confusion matrix and its PNG.

Anchor: torchvision `references/classification/utils.py` `accuracy` (top-k over the logits, a soft target
reduced to its argmax, percent of the batch) averaged over the whole set as its MetricLogger's global_avg
does; the confusion matrix as sklearn's (rows: true class, columns: predicted). Proven by
tests/classification/test_evaluation.py against a copy of that `accuracy`.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from resbone.engine import distributed as comm
from resbone.engine.data import build_test_loader
from resbone.engine.runtime import progress_bar
from resbone.utils.files import atomic_path

__all__ = ["accuracy", "classification_metrics", "confusion_matrix", "plot_confusion_matrix", "predict_logits"]


def accuracy(logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """The percentage of rows whose target is among the k highest logits, for each k of `topk`."""
    if target.ndim == 2:  # MixUp / CutMix's soft labels: their main class
        target = target.argmax(dim=1)
    top = logits.topk(max(topk), dim=1).indices
    correct = top.eq(target[:, None])
    return [float(correct[:, :k].sum(dtype=torch.float64) * 100.0 / len(target)) for k in topk]


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted]."""
    return torch.bincount(target * num_classes + predicted, minlength=num_classes ** 2).reshape(num_classes,
                                                                                               num_classes)


def classification_metrics(logits: torch.Tensor, target: torch.Tensor, class_names: Sequence[str]) -> dict:
    """{'Acc@1', 'Acc@5' (five classes or more), 'per_class': {name: Acc@1 of its images}, 'confusion': rows}."""
    num_classes = len(class_names)
    topk = (1, 5) if num_classes >= 5 else (1,)
    values = accuracy(logits, target, topk)
    matrix = confusion_matrix(logits.argmax(dim=1), target, num_classes)
    per_class = {name: (float(matrix[i, i] * 100.0 / matrix[i].sum()) if matrix[i].sum() else float("nan"))
                 for i, name in enumerate(class_names)}
    return {**{f"Acc@{k}": v for k, v in zip(topk, values)}, "per_class": per_class,
            "confusion": matrix.tolist()}


@torch.no_grad()
def predict_logits(model: nn.Module, dataset, device: torch.device, *, batch_size: int, num_workers: int = 0,
                   progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the whole set, gathered from every rank in the set's order."""
    loader = build_test_loader(dataset, batch_size=batch_size, collate_fn=torch.utils.data.default_collate,
                               num_workers=num_workers)
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    try:
        for images, target in progress_bar(loader, desc="eval", enabled=progress and comm.is_main_process()):
            outputs.append(model(images.to(device)).float().cpu())
            labels.append(target)
    finally:
        model.train(was_training)
    parts = comm.all_gather_object((torch.cat(outputs), torch.cat(labels)) if outputs else None)
    # rank r holds indices r::world; interleave them back into the set's order
    world, total = len(parts), len(dataset)
    logits = torch.empty(total, parts[0][0].shape[1])
    target = torch.empty(total, dtype=torch.long)
    for rank, part in enumerate(parts):
        if part is not None:
            logits[rank::world], target[rank::world] = part
    return logits, target


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str, *,
                          title: str = "") -> str:
    """The confusion matrix as a PNG (rows: true class, columns: predicted; each row normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(matrix, dtype=torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    side = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    shown = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 30:
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return path
