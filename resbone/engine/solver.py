"""SGD with FCOS's parameter groups, and its warmup + multi-step learning-rate schedule.

Anchor: FCOS/maskrcnn-benchmark `solver/build.py` (`make_optimizer`: biases get BASE_LR *
BIAS_LR_FACTOR and WEIGHT_DECAY_BIAS; deformable-conv offsets DCONV_OFFSETS_LR_FACTOR) and
`solver/lr_scheduler.py` (`WarmupMultiStepLR`). Proven by tests/engine/test_solver.py against the
hand-computed schedule.
"""
from __future__ import annotations

from bisect import bisect_right

import torch
from torch import nn

__all__ = ["build_optimizer", "build_lr_scheduler", "lr_factor"]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.SGD:
    solver = cfg.SOLVER
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr, weight_decay = solver.BASE_LR, solver.WEIGHT_DECAY
        if name.endswith("bias"):
            lr, weight_decay = solver.BASE_LR * solver.BIAS_LR_FACTOR, solver.WEIGHT_DECAY_BIAS
        if "offset" in name:  # deformable-conv offset branches (conv_offset / conv2_offset)
            lr *= solver.DCONV_OFFSETS_LR_FACTOR
        groups.setdefault((lr, weight_decay), []).append(param)
    if not groups:
        raise ValueError("the model has no trainable parameter (all frozen?); check "
                         "MODEL.BACKBONE.FREEZE_CONV_BODY_AT")
    # one group per (lr, weight decay) pair, in a fixed order so that a checkpoint's optimizer state fits
    param_groups = [dict(params=params, lr=lr, weight_decay=wd) for (lr, wd), params in groups.items()]
    return torch.optim.SGD(param_groups, lr=solver.BASE_LR, momentum=solver.MOMENTUM)


def lr_factor(iteration: int, *, steps, gamma: float, warmup_factor: float, warmup_iters: int,
              warmup_method: str) -> float:
    """The multiplier of the base lr at `iteration` (0-based), as FCOS's WarmupMultiStepLR."""
    if warmup_method not in ("constant", "linear"):
        raise ValueError(f"SOLVER.WARMUP_METHOD must be 'constant' or 'linear', got {warmup_method!r}")
    warmup = 1.0
    if iteration < warmup_iters:
        if warmup_method == "constant":
            warmup = warmup_factor
        else:
            alpha = iteration / warmup_iters
            warmup = warmup_factor * (1 - alpha) + alpha
    return warmup * gamma ** bisect_right(list(steps), iteration)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration, after the optimizer; its state_dict carries the iteration."""
    solver = cfg.SOLVER
    settings = dict(steps=tuple(solver.STEPS), gamma=solver.GAMMA, warmup_factor=solver.WARMUP_FACTOR,
                    warmup_iters=solver.WARMUP_ITERS, warmup_method=solver.WARMUP_METHOD)
    lr_factor(0, **settings)  # validates the method before training starts
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, **settings))
