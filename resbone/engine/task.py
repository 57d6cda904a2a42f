"""What the engine asks of a task (detection, classification, re-id): its data, model, losses and evaluation.

Anchor: detectron2's DefaultTrainer, whose `build_model`, `build_train_loader`, `build_evaluator` and
`test` a project overrides; here they are the methods of one object the engine's Trainer is given, so
the engine imports no task and each task folder owns its own parts (resbone.detection.task,
resbone.classification.task). Proven by tests/engine/test_train_loop.py (a task written in the test).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Task"]


class Task:
    """The parts of a training run that depend on the task. `name` is the config's TASK; `network_method`
    the model method MODEL.COMPILE / CHANNELS_LAST apply to (resbone.engine.accelerate)."""

    name: str = ""
    network_method: str = "forward"

    def build_train_set(self, cfg) -> torch.utils.data.Dataset:
        """The training set; its `class_names` go into every checkpoint."""
        raise NotImplementedError

    def collate(self, batch: list) -> Any:
        """The training batches from a list of samples (default: torch's default_collate)."""
        return torch.utils.data.default_collate(batch)

    def batch_sampler(self, cfg, train_set, batch_size: int):
        """This rank's training batches as lists of indices (with `set_epoch(e)` and `__len__`), or None for the
        engine's shuffled batches of `batch_size` (resbone.engine.data.build_train_batches)."""
        return None

    def build_model(self, cfg, train_set) -> nn.Module:
        """The model, with MODEL.WEIGHT (or pretrained weights) loaded and its outputs fitted to `train_set`."""
        raise NotImplementedError

    def param_lr_factor(self, cfg, name: str) -> float:
        """A multiplier of the learning rate of the parameter `name` (e.g. a lower one for a backbone)."""
        return 1.0

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets = batch
        return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """{name: scalar loss} of `model` (train mode, perhaps DDP-wrapped) on a batch already on the device."""
        raise NotImplementedError

    def evaluate(self, cfg, model: nn.Module, device: torch.device, *, progress: bool = True
                 ) -> dict[str, dict[str, float]]:
        """{data set: {metric: value}} of `model` on the config's test sets (on every rank)."""
        raise NotImplementedError

    def format_metrics(self, metrics: dict[str, float]) -> str:
        """One line of a data set's metrics, as `resbone train` / `eval` print them."""
        return "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
