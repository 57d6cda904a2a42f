"""SGD parameter groups and the warmup + multi-step schedule, against hand-computed values (FCOS's rules)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from resbone.detection.config import load_cfg
from resbone.engine.solver import build_lr_scheduler, build_optimizer


def _cfg(*opts):
    return load_cfg(None, ["SOLVER.BASE_LR", "0.1", "SOLVER.STEPS", "(6, 8)", "SOLVER.GAMMA", "0.5",
                           "SOLVER.WARMUP_ITERS", "4", "SOLVER.WARMUP_FACTOR", "0.2", *opts])


def _lrs(cfg, n=10):
    optimizer = build_optimizer(cfg, nn.Linear(2, 2))
    scheduler = build_lr_scheduler(cfg, optimizer)
    weights = [g for g in optimizer.param_groups if g["params"][0].dim() == 2][0]
    lrs = []
    for _ in range(n):
        lrs.append(weights["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_linear_warmup_then_steps():
    # iteration i < 4: 0.1 * (0.2 * (1 - i/4) + i/4); steps at 6 and 8 multiply by 0.5 each
    expected = [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert _lrs(_cfg("SOLVER.WARMUP_METHOD", "linear")) == pytest.approx(expected, rel=1e-12)


def test_constant_warmup():
    expected = [0.02] * 4 + [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert _lrs(_cfg("SOLVER.WARMUP_METHOD", "constant")) == pytest.approx(expected, rel=1e-12)


def test_bias_lr_factor_and_weight_decay_groups():
    cfg = _cfg("SOLVER.BIAS_LR_FACTOR", "2", "SOLVER.WEIGHT_DECAY", "0.001", "SOLVER.WEIGHT_DECAY_BIAS", "0.0",
               "SOLVER.MOMENTUM", "0.8", "SOLVER.WARMUP_ITERS", "0")
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    optimizer = build_optimizer(cfg, model)
    groups = {(g["lr"], g["weight_decay"]): g["params"] for g in optimizer.param_groups}
    assert set(map(id, groups[(0.1, 0.001)])) == {id(model[1].weight)}
    assert set(map(id, groups[(0.2, 0.0)])) == {id(model[0].bias), id(model[1].bias)}
    assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)
    # one SGD step with momentum and decay equals the hand-written update
    model[1].weight.grad = torch.ones_like(model[1].weight)
    before = model[1].weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(model[1].weight.detach(), before - 0.1 * (1 + 0.001 * before), rtol=0, atol=1e-7)


def test_cosine_schedule_after_warmup():
    # detectron2's WarmupCosineLR: 0.1 * warmup(i) * (end + (1 - end) * (1 + cos(pi * i / 10)) / 2), end = 0.01/0.1
    cfg = _cfg("SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.MAX_ITER", "10", "SOLVER.STEPS", "()",
               "SOLVER.BASE_LR_END", "0.01")
    warmup = [0.2, 0.4, 0.6, 0.8] + [1.0] * 6
    expected = [0.1 * w * (0.1 + 0.9 * (1 + math.cos(math.pi * i / 10)) / 2) for i, w in enumerate(warmup)]
    assert _lrs(cfg) == pytest.approx(expected, rel=1e-12)
    assert _lrs(cfg, 12)[-1] == pytest.approx(0.01)  # past MAX_ITER the lr stays at BASE_LR_END


def test_adamw_step_is_the_decoupled_update():
    cfg = _cfg("SOLVER.OPTIMIZER", "AdamW", "SOLVER.WEIGHT_DECAY", "0.05", "SOLVER.WARMUP_ITERS", "0")
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    model.weight.grad = torch.full_like(model.weight, 0.5)
    model.bias.grad = -torch.ones_like(model.bias)
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    optimizer.step()
    # first Adam step: the bias-corrected moments are g and g^2, so the step is lr * g / (|g| + eps); the decay
    # shrinks the weight by lr * wd first; the bias has BIAS_LR_FACTOR 2 (lr 0.2) and no decay
    torch.testing.assert_close(model.weight.detach(), weight * (1 - 0.1 * 0.05) - 0.1 * 0.5 / (0.5 + 1e-8))
    torch.testing.assert_close(model.bias.detach(), bias + 0.2 / (1 + 1e-8))


def test_adam_step_adds_the_weight_decay_to_the_gradient():
    cfg = _cfg("SOLVER.OPTIMIZER", "Adam", "SOLVER.WEIGHT_DECAY", "0.5", "SOLVER.WARMUP_ITERS", "0",
               "SOLVER.BIAS_LR_FACTOR", "1.0")
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer) is torch.optim.Adam
    model.weight.grad = torch.full_like(model.weight, 0.5)
    weight = model.weight.detach().clone()
    model.bias.grad = torch.zeros_like(model.bias)
    optimizer.step()
    # L2 (reid-strong-baseline's Adam): g' = g + wd * w, and the first step is lr * g' / (|g'| + eps)
    grad = 0.5 + 0.5 * weight
    torch.testing.assert_close(model.weight.detach(), weight - 0.1 * grad / (grad.abs() + 1e-8))


@pytest.mark.parametrize("opts, message", [
    (("SOLVER.OPTIMIZER", "Adagrad"), "SOLVER.OPTIMIZER must be one of 'SGD', 'AdamW', 'Adam'"),
    (("SOLVER.LR_SCHEDULER_NAME", "Cosine"), "SOLVER.LR_SCHEDULER_NAME must be one of"),
    (("SOLVER.BASE_LR_END", "0.5"), "SOLVER.BASE_LR_END must be in"),
])
def test_unknown_optimizer_or_schedule_is_named(opts, message):
    with pytest.raises(ValueError, match=message):
        _lrs(_cfg(*opts))
