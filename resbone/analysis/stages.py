"""Which modules form the stages of the architecture table, found from the module tree and the order of
execution, so no model class is special-cased:
- ResNet-like (children `layer1`, `layer2`, ...: torchvision, timm, resbone): `stem` (everything run
  before the first layer: conv1/bn1/relu/maxpool or the deep stem), each layer, `head` (what runs after:
  avgpool/fc), as in Table 1 of He et al. 2016.
- A `features` sequence (MobileNetV2): consecutive blocks with the same output channels form one
  stage, which reproduces the rows (c, n, s) of Table 2 of Sandler et al. 2018; timm's `blocks` /
  `stages` sequences give one row per stage, with `stem` and `head` around them.
- Anything else: one row per top-level child.
tests/analysis/test_summary.py checks the rows against both tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from resbone.analysis.table import StageSummary
from resbone.analysis.trace import Tracer

__all__ = ["StageGroup", "finish_groups", "main_tensor", "stage_groups"]


@dataclass(eq=False)
class StageGroup:
    """A row being gathered during the forward pass: its modules, the MACs they ran, the last one to finish."""

    name: str
    modules: list[nn.Module]
    blocks: int | None = None
    macs: int = 0
    last: nn.Module | None = None


_LAYER = re.compile(r"^layer(\d+)$")


_SEQUENCES = ("features", "blocks", "stages")  # torchvision MobileNetV2 / timm's names for the stage list


def stage_groups(model: nn.Module) -> list[StageGroup]:
    """The candidate rows, one per top module (and one per element of a `features`/`blocks`/`stages`
    sequence); which of them form the stem and the head, and which blocks form one MobileNetV2 stage,
    is settled after the forward pass from the execution order and the output channels."""
    children = dict(model.named_children())
    groups = []
    if not any(_LAYER.match(n) for n in children):
        for sequence in _SEQUENCES:
            if isinstance(children.get(sequence), nn.Sequential):
                for name, module in children.pop(sequence).named_children():
                    groups.append(StageGroup(f"{sequence}.{name}", [module], _block_count(module)))
                break
    for name, module in children.items():
        groups.append(StageGroup(name, [module], _block_count(module) if _LAYER.match(name) else None))
    return groups


def _block_count(module: nn.Module) -> int:
    """Blocks in a stage: the elements of a plain sequence of blocks (not of a conv-norm-act triple)."""
    if isinstance(module, (nn.Sequential, nn.ModuleList)) and all(next(m.children(), None) for m in module):
        return len(module)
    blocks = getattr(module, "blocks", None)  # a timm stage: downsample + blocks
    return len(blocks) if isinstance(blocks, (nn.Sequential, nn.ModuleList)) else 1


def finish_groups(groups: list[StageGroup], order: list[nn.Module], outputs: dict[nn.Module, Any],
                   tracer: Tracer) -> list[StageSummary]:
    first_call = {}
    for i, module in enumerate(order):
        first_call.setdefault(module, i)
    ran = sorted((g for g in groups if g.last is not None), key=lambda g: first_call[g.modules[0]])
    layered = [g for g in ran if _LAYER.match(g.name)]
    if layered:
        start, end = ran.index(layered[0]), ran.index(layered[-1])
        merged = [_merge("stem", ran[:start])] + ran[start:end + 1] + [_merge("head", ran[end + 1:])]
    elif any(g.name.startswith(_SEQUENCES) for g in ran):
        merged = _merge_sequence(ran, outputs)
    else:
        merged = ran
    stages = []
    for g in merged:
        if g is None:
            continue
        out = main_tensor(outputs[g.last])
        found = tracer.field(out) if out is not None else None
        shape = tuple(out.shape[1:]) if out is not None else ()
        is_map = out is not None and out.dim() == 4
        params = sum(p.numel() for p in {p: None for m in g.modules for p in m.parameters()})
        stages.append(StageSummary(
            name=g.name, output_shape=shape,
            stride=found.jump if (found is not None and is_map) else None,
            channels=int(shape[0]) if shape else None, blocks=g.blocks, params=params, macs=g.macs,
            receptive_field=found.size if found is not None else None,
            local_receptive_field=found.local if (found is not None and is_map) else None))
    outside = tracer.macs - sum(s.macs for s in stages)
    if outside:  # functional convolutions or matmuls in the model's own forward, outside every child
        stages.append(StageSummary("(functional)", (), None, None, None, 0, outside, None))
    return stages


def _merge(name: str, parts: list[StageGroup]) -> StageGroup | None:
    if not parts:
        return None
    # `parts` is in execution order, so the last one's output is the merged stage's output.
    return StageGroup(name, [m for g in parts for m in g.modules], None, sum(g.macs for g in parts), parts[-1].last)


def _merge_sequence(ran: list[StageGroup], outputs: dict[nn.Module, Any]) -> list[StageGroup]:
    """Rows for a model built around one sequence: what runs before it is the `stem`, after it the
    `head`; consecutive single blocks with equal output channels (MobileNetV2's `features`) become one
    stage `features.N-M`, while elements that are stages themselves (timm's `stages`) stay rows."""
    def channels(g: StageGroup) -> int | None:
        out = main_tensor(outputs[g.last])
        return int(out.shape[1]) if out is not None and out.dim() > 1 else None

    features = [g for g in ran if g.name.startswith(_SEQUENCES)]
    first_feature, last_feature = ran.index(features[0]), ran.index(features[-1])
    runs: list[list[StageGroup]] = []
    for g in features:
        if runs and g.blocks == 1 and runs[-1][-1].blocks == 1 and channels(runs[-1][-1]) == channels(g):
            runs[-1].append(g)
        else:
            runs.append([g])
    stem = _merge("stem", ran[:first_feature])
    stages = [] if stem is None else [stem]
    for run in runs:
        name = run[0].name if len(run) == 1 else f"{run[0].name}-{run[-1].name.split('.')[-1]}"
        stages.append(StageGroup(name, [m for g in run for m in g.modules], sum(g.blocks or 1 for g in run),
                             sum(g.macs for g in run), run[-1].last))
    head = _merge("head", ran[last_feature + 1:])
    return stages + ([head] if head is not None else [])

def main_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in reversed(value):  # a backbone returns (C2, ..., C5): the stage's output is the last
            t = main_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        return main_tensor(list(value.values()))
    return None
