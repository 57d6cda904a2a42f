"""The paper's architecture table for any model: per stage output shape, stride, channels, blocks,
params, MACs and receptive field, with totals; and the counts on their own.

This module runs the model once and puts the pieces together: `resbone.analysis.stages` finds the rows
from the module tree and the order of execution (no model class is special-cased), `resbone.analysis.trace`
counts MACs and propagates receptive fields, `resbone.analysis.table` holds the rows and prints them, and
`resbone.analysis.registered` builds registered models by name on the meta device. The public names of all
four are importable from here. tests/analysis/test_summary.py checks the totals against torchvision's
published figures and the fields against input gradients.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from resbone.analysis.registered import analyse_by_name, close_names, create_meta_model, matching_models
from resbone.analysis.stages import StageGroup, finish_groups, main_tensor, stage_groups
from resbone.analysis.table import ModelSummary, StageSummary, format_table
from resbone.analysis.trace import Tracer, run_traced
from resbone.models.registry import list_models
from resbone.utils.checks import is_int

__all__ = ["ModelSummary", "StageSummary", "count_macs", "count_params", "create_meta_model", "format_table",
           "matching_models", "model_table_markdown", "receptive_field", "summarize"]


# ---- public counting functions ---------------------------------------------------------------------
def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (224, 224), *, in_channels: int | None = None) -> int:
    """Multiply-adds of one forward pass on one image of `input_size` (H, W): convolutions, linear
    layers and matrix products, as torchvision's published figures count them (resnet50: 4.089e9)."""
    tracer = Tracer()
    _run(model, _example_input(model, input_size, in_channels), tracer)
    return tracer.macs


def receptive_field(model: nn.Module, input_size: Sequence[int] = (224, 224), *,
                    modules: Sequence[str] | None = None,
                    in_channels: int | None = None) -> dict[str, tuple[float, float]]:
    """Analytic receptive field (height, width) in input pixels at the output of each named module
    (default: each stage of `summarize`). `math.inf` means the whole input (global context)."""
    if isinstance(modules, str):
        modules = [modules]
    if modules is None:
        summary = summarize(model, input_size, in_channels=in_channels)
        return {s.name: s.receptive_field for s in summary.stages if s.receptive_field is not None}
    named = dict(model.named_modules())
    unknown = [m for m in modules if m not in named]
    if unknown:
        raise KeyError(f"no module named {unknown[0]!r} in {type(model).__name__}; {close_names(unknown[0], named)}")
    outputs: dict[str, torch.Tensor] = {}
    handles = [named[m].register_forward_hook(_keep_output(outputs, m)) for m in modules]
    tracer = Tracer()
    try:
        _run(model, _example_input(model, input_size, in_channels), tracer)
    finally:
        for h in handles:
            h.remove()
    result = {}
    for m in modules:
        found = tracer.field(outputs[m]) if m in outputs else None
        if found is None:
            raise ValueError(f"module {m!r} did not produce a tensor derived from the input in the forward pass")
        result[m] = found.size
    return result


# ---- the table -----------------------------------------------------------------------------------
def summarize(model: nn.Module | str, input_size: Sequence[int] = (224, 224), *, in_channels: int | None = None,
              model_kwargs: dict[str, Any] | None = None) -> ModelSummary:
    """The architecture table of `model` (an nn.Module, or a registered name built with `model_kwargs`
    on the meta device, so no memory or compute is spent on weights) for one image of `input_size`."""
    if isinstance(model, str):
        return analyse_by_name(model, model_kwargs or {}, lambda m: _summarize(m, input_size, in_channels, model))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a registered model name, got {type(model).__name__}")
    if model_kwargs:
        raise TypeError("model_kwargs only applies when `model` is a registered name, not a module")
    return _summarize(model, input_size, in_channels, type(model).__name__)


def _summarize(model: nn.Module, input_size: Sequence[int], in_channels: int | None, name: str) -> ModelSummary:
    x = _example_input(model, input_size, in_channels)
    groups = stage_groups(model)
    order: list[nn.Module] = []  # top modules in the order their forward starts
    owner = {m: g for g in groups for m in g.modules}
    running: list[StageGroup] = []
    outputs: dict[nn.Module, Any] = {}

    def credit(macs: int) -> None:
        if running:
            running[-1].macs += macs

    def pre(module: nn.Module, _args: Any) -> None:
        order.append(module)
        running.append(owner[module])

    def post(module: nn.Module, _args: Any, output: Any) -> None:
        running.pop()
        outputs[module] = output
        owner[module].last = module

    handles = []
    for module in owner:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    tracer = Tracer(on_macs=credit)
    try:
        _run(model, x, tracer)
    finally:
        for h in handles:
            h.remove()
    stages = finish_groups(groups, order, outputs, tracer)
    return ModelSummary(name=name, input_shape=tuple(x.shape[1:]), stages=stages,  # type: ignore[arg-type]
                        params=count_params(model), trainable_params=count_params(model, trainable_only=True),
                        macs=tracer.macs)


def model_table_markdown(names: Iterable[str] | None = None, *, input_size: Sequence[int] = (224, 224)) -> str:
    """A markdown table of registered models (default: all) with params and GMACs at `input_size`."""
    names = list(list_models() if names is None else names)
    h, w = _check_size(input_size)
    lines = [f"| model | params | GMACs ({h}x{w}) |", "|---|---:|---:|"]
    for name in names:
        params, macs = analyse_by_name(name, {}, lambda m: (count_params(m), count_macs(m, (h, w))))
        lines.append(f"| {name} | {params / 1e6:.2f} M | {macs / 1e9:.3f} |")
    return "\n".join(lines)


# ---- internals ------------------------------------------------------------------------------------
def _run(model: nn.Module, x: torch.Tensor, tracer: Tracer) -> Any:
    try:
        return run_traced(model, x, tracer)
    except NotImplementedError:  # an op without a meta kernel (a RuntimeError subclass): see `analyse_by_name`
        raise
    except RuntimeError as error:  # e.g. a kernel larger than the map: the input is too small
        raise ValueError(f"{type(model).__name__} cannot run on an input of shape {tuple(x.shape)}: {error}") from None


def _keep_output(store: dict, name: str):
    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        store[name] = main_tensor(output)
    return hook


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(input_size) if isinstance(input_size, (list, tuple)) else (input_size, input_size)
    if len(size) != 2 or not all(is_int(v) and v > 0 for v in size):
        raise ValueError(f"input_size must be two positive integers (H, W), got {input_size!r}")
    return size  # type: ignore[return-value]


def _example_input(model: nn.Module, input_size: Sequence[int], in_channels: int | None) -> torch.Tensor:
    h, w = _check_size(input_size)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if in_channels is None:
        first_conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        in_channels = first_conv.in_channels if first_conv is not None else 3
    return torch.zeros(1, in_channels, h, w, device=device, dtype=dtype)

