"""The training loop of every task: a trainer that runs one step at a time and hooks that do the periodic work.

Anchor: detectron2's `engine/train_loop.py` (`HookBase` with before_train / after_train / before_step /
after_step, `TrainerBase.train(start_iter, max_iter)` calling them around `run_step`, `SimpleTrainer.run_step`:
next batch, losses, backward, optimizer step) and its `AMPTrainer` (autocast + GradScaler). Differences:
after_train runs only when the loop completed (a run that raised is resumed from its checkpoint, not
evaluated); the learning-rate schedule and the weight average are hooks (resbone.engine.hooks) as in
detectron2; the task supplies the losses (`loss_fn(model, batch)`), so the loop knows no task.
Proven by tests/engine/test_train_loop.py (losses and gradients equal a hand-written torch loop) and
tests/engine/test_trainer.py (resume).
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from resbone.engine import distributed as comm
from resbone.engine.accelerate import autocast

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "LossWindow"]


class HookBase:
    """Periodic work around the steps; `self.trainer` is set by TrainerBase.register_hooks."""

    trainer: "TrainerBase"

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class LossWindow:
    """The losses of the last step, their sums since the last record, and the time since training started
    (detectron2's EventStorage, reduced to what resbone's records hold)."""

    def __init__(self, start_iter: int) -> None:
        self.start_iter, self.start = start_iter, time.perf_counter()
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last: dict[str, float] = {}
        self.lr = 0.0
        self.data_time = 0.0

    def add(self, losses: dict[str, float], *, lr: float, data_time: float) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.last, self.lr, self.data_time = losses, lr, data_time

    def means(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else dict(self.last)

    def take(self) -> dict[str, float]:
        """The means since the last take, then a fresh window."""
        means = self.means()
        self.sums, self.count = {}, 0
        return means

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def seconds_per_iteration(self, done: int) -> float:
        return self.elapsed() / max(1, done - self.start_iter)


class TrainerBase:
    """Runs `run_step` from start_iter to max_iter with the hooks around it. `iter` is the iteration running
    (0-based); `storage` the LossWindow the steps write into."""

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.storage = LossWindow(0)

    def register_hooks(self, hooks: Sequence[HookBase | None]) -> None:
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self.storage = LossWindow(start_iter)
        for hook in self._hooks:
            hook.before_train()
        for self.iter in range(start_iter, max_iter):
            for hook in self._hooks:
                hook.before_step()
            self.run_step()
            for hook in self._hooks:
                hook.after_step()
        self.iter = max_iter
        for hook in self._hooks:
            hook.after_train()

    def run_step(self) -> None:
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """One optimizer step per iteration: the next batch of `data` (moved by `to_device`), `loss_fn(model,
    batch)` -> {name: loss} under autocast, their sum backward (through a GradScaler with float16 AMP),
    optional gradient-norm clipping, the optimizer step. The losses, averaged over the processes, go to
    `storage`. `model` may be a DDP wrapper of `module` (the parameters clipping sees)."""

    def __init__(self, model: nn.Module, data: Iterator, optimizer: torch.optim.Optimizer, *,
                 loss_fn: Callable[[nn.Module, object], dict], to_device: Callable = lambda batch, device: batch,
                 device: torch.device = torch.device("cpu"), module: nn.Module | None = None, amp: bool = False,
                 amp_dtype: str = "auto", clip_grad_norm: float = 0.0) -> None:
        super().__init__()
        self.model, self.module = model, module if module is not None else model
        self.data, self.optimizer = data, optimizer
        self.loss_fn, self.to_device, self.device = loss_fn, to_device, torch.device(device)
        self.amp, self.amp_dtype, self.clip_grad_norm = amp, amp_dtype, clip_grad_norm
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and self.device.type == "cuda")

    def run_step(self) -> None:
        start = time.perf_counter()
        batch = next(self.data)
        data_time = time.perf_counter() - start
        batch = self.to_device(batch, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        with autocast(self.device, enabled=self.amp, dtype=self.amp_dtype):
            loss_dict = self.loss_fn(self.model, batch)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at iteration {self.iter + 1} "
                                     f"({ {k: v.item() for k, v in loss_dict.items()} }); lower "
                                     "SOLVER.BASE_LR or set SOLVER.CLIP_GRAD_NORM")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        losses = comm.reduce_mean({"loss": loss.item(), **{k: v.item() for k, v in loss_dict.items()}})
        self.storage.add(losses, lr=lr, data_time=data_time)
