"""The optimizer with FCOS's parameter groups, and its warmup + multi-step (or cosine) learning-rate schedule.

Anchor: FCOS/maskrcnn-benchmark `solver/build.py` (`make_optimizer`: biases get BASE_LR *
BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS; deformable-conv offsets DCONV_OFFSETS_LR_FACTOR) and
`solver/lr_scheduler.py` (`WarmupMultiStepLR`); from detectron2 `solver/lr_scheduler.py`, `WarmupCosineLR`
(SOLVER.LR_SCHEDULER_NAME, with BASE_LR_END) and, as mmdet's configs, AdamW (SOLVER.OPTIMIZER) for short
from-scratch schedules, and Adam (reid-strong-baseline's optimizer). Proven by tests/engine/test_solver.py
against the hand-computed schedule and update.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Callable

import torch
from torch import nn

__all__ = ["build_optimizer", "build_lr_scheduler", "lr_factor", "OPTIMIZERS", "LR_SCHEDULERS"]

OPTIMIZERS = ("SGD", "AdamW", "Adam")
LR_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR")


def build_optimizer(cfg, model: nn.Module, *, lr_factor: Callable[[str], float] | None = None
                    ) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over FCOS's (lr, weight decay) groups: SGD with MOMENTUM, AdamW (betas 0.9/0.999,
    WEIGHT_DECAY decoupled) or Adam (WEIGHT_DECAY as L2, reid-strong-baseline's). `lr_factor(name)` multiplies
    a parameter's lr (a task's lower backbone lr)."""
    solver = cfg.SOLVER
    if solver.OPTIMIZER not in OPTIMIZERS:
        raise ValueError(f"SOLVER.OPTIMIZER must be one of {', '.join(OPTIMIZERS)}, got {solver.OPTIMIZER!r}")
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr, weight_decay = solver.BASE_LR, solver.WEIGHT_DECAY
        if name.endswith("bias"):
            lr, weight_decay = solver.BASE_LR * solver.BIAS_LR_FACTOR, solver.WEIGHT_DECAY_BIAS
        if "offset" in name:  # deformable-conv offset branches (conv_offset / conv2_offset)
            lr *= solver.DCONV_OFFSETS_LR_FACTOR
        if lr_factor is not None:
            lr *= lr_factor(name)
        groups.setdefault((lr, weight_decay), []).append(param)
    if not groups:
        raise ValueError("the model has no trainable parameter (all frozen?); check its freezing keys "
                         "(MODEL.BACKBONE.FREEZE_CONV_BODY_AT, MODEL.FROZEN_STAGES)")
    # one group per (lr, weight decay) pair, in a fixed order so that a checkpoint's optimizer state fits
    param_groups = [dict(params=params, lr=lr, weight_decay=wd) for (lr, wd), params in groups.items()]
    if solver.OPTIMIZER == "AdamW":
        return torch.optim.AdamW(param_groups, lr=solver.BASE_LR)
    if solver.OPTIMIZER == "Adam":  # re-id's baseline: the weight decay is an L2 term added to the gradient
        return torch.optim.Adam(param_groups, lr=solver.BASE_LR)
    return torch.optim.SGD(param_groups, lr=solver.BASE_LR, momentum=solver.MOMENTUM)


def lr_factor(iteration: int, *, steps, gamma: float, warmup_factor: float, warmup_iters: int,
              warmup_method: str, name: str = "WarmupMultiStepLR", max_iter: int = 0,
              end_factor: float = 0.0) -> float:
    """The multiplier of the base lr at `iteration` (0-based): FCOS's WarmupMultiStepLR, or detectron2's
    WarmupCosineLR (half a cosine from 1 at iteration 0 to `end_factor` at `max_iter`, times the warmup)."""
    if warmup_method not in ("constant", "linear"):
        raise ValueError(f"SOLVER.WARMUP_METHOD must be 'constant' or 'linear', got {warmup_method!r}")
    if name not in LR_SCHEDULERS:
        raise ValueError(f"SOLVER.LR_SCHEDULER_NAME must be one of {', '.join(LR_SCHEDULERS)}, got {name!r}")
    if name == "WarmupCosineLR" and max_iter <= 0:
        raise ValueError(f"SOLVER.LR_SCHEDULER_NAME WarmupCosineLR needs SOLVER.MAX_ITER > 0, got {max_iter}")
    warmup = 1.0
    if iteration < warmup_iters:
        if warmup_method == "constant":
            warmup = warmup_factor
        else:
            alpha = iteration / warmup_iters
            warmup = warmup_factor * (1 - alpha) + alpha
    if name == "WarmupCosineLR":
        progress = min(iteration / max_iter, 1.0)
        return warmup * (end_factor + (1 - end_factor) * 0.5 * (1 + math.cos(math.pi * progress)))
    return warmup * gamma ** bisect_right(list(steps), iteration)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration, after the optimizer; its state_dict carries the iteration."""
    solver = cfg.SOLVER
    if not 0.0 <= solver.BASE_LR_END <= solver.BASE_LR:
        raise ValueError(f"SOLVER.BASE_LR_END must be in [0, SOLVER.BASE_LR = {solver.BASE_LR}], "
                         f"got {solver.BASE_LR_END}")
    settings = dict(steps=tuple(solver.STEPS), gamma=solver.GAMMA, warmup_factor=solver.WARMUP_FACTOR,
                    warmup_iters=solver.WARMUP_ITERS, warmup_method=solver.WARMUP_METHOD,
                    name=solver.LR_SCHEDULER_NAME, max_iter=solver.MAX_ITER,
                    end_factor=solver.BASE_LR_END / solver.BASE_LR if solver.BASE_LR > 0 else 0.0)
    lr_factor(0, **settings)  # validates the names before training starts
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, **settings))
