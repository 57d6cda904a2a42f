"""A run killed between two checkpoints, for the resume tests of every task: a model that raises at its n-th
training forward."""
from __future__ import annotations

from typing import Callable

from torch import nn


class Interrupted(Exception):
    pass


def dies_at(n: int, build: Callable[[object], nn.Module]) -> Callable[[object], nn.Module]:
    """A `model_fn(cfg)` for a trainer: `build(cfg)`, whose n-th forward in training mode raises Interrupted."""
    def model_fn(cfg):
        model, calls = build(cfg), []

        def count(module, args):
            if module.training:
                calls.append(1)
                if len(calls) == n:
                    raise Interrupted
        model.register_forward_pre_hook(count)
        return model
    return model_fn
