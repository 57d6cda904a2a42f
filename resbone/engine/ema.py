"""An exponential moving average of the weights during training (MODEL_EMA), evaluated in their place.

Anchor: d2go's MODEL_EMA (ENABLED, DECAY; the averaged weights are the ones evaluated and kept) and
timm's ModelEma (checkpoints keep both; loading prefers the averaged weights). The average is
torch.optim.swa_utils.AveragedModel with torch's EMA update; the decay ramps up as TensorFlow's
ExponentialMovingAverage(num_updates) does, min(DECAY, (1 + n) / (10 + n)) once n steps are averaged, so
that a short from-scratch run does not keep its early weights in the average. The first update copies
the model.
Proven by tests/engine/test_ema.py (the average against a hand-computed one, checkpoint and resume).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["ModelEMA", "ema_decay"]


def ema_decay(decay: float, averaged: int) -> float:
    """The decay of the next update once `averaged` steps are in the average: min(decay, (1 + n) / (10 + n))."""
    return min(decay, (1.0 + averaged) / (10.0 + averaged))


class ModelEMA:
    """The averaged copy of `model` (parameters and floating-point buffers; integer buffers are copied).

    `update(model)` after each optimizer step; `module` is the averaged network (eval() it to use it);
    `state_dict()` / `load_state_dict()` hold the weights and the number of updates, for checkpoints."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"MODEL_EMA.DECAY must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self._averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self._averaged.eval()
        for parameter in self._averaged.parameters():
            parameter.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self._averaged.module

    @property
    def updates(self) -> int:
        return int(self._averaged.n_averaged)

    def _average(self, averaged: list, current: list, n_averaged: torch.Tensor) -> None:
        # AveragedModel copies the model at its first update, then calls this with n_averaged >= 1
        if averaged[0].is_floating_point():
            get_ema_multi_avg_fn(ema_decay(self.decay, int(n_averaged)))(averaged, current, n_averaged)
        else:  # num_batches_tracked and other counters follow the model
            for mine, theirs in zip(averaged, current):
                mine.copy_(theirs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return dict(model=self.module.state_dict(), updates=self.updates)

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self._averaged.n_averaged.fill_(int(state["updates"]))
