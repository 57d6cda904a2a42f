"""The paper's architecture table for any model: per stage output shape, stride, channels, blocks,
params, MACs and receptive field, with totals.

Stages are found from the module tree and the order of execution, so no model class is special-cased:
- ResNet-like (children `layer1`, `layer2`, ...: torchvision, timm, resbone): `stem` (everything run
  before the first layer: conv1/bn1/relu/maxpool or the deep stem), each layer, `head` (what runs after:
  avgpool/fc), as in Table 1 of He et al. 2016.
- A `features` sequence (MobileNetV2): consecutive blocks with the same output channels form one
  stage, which reproduces the rows (c, n, s) of Table 2 of Sandler et al. 2018; timm's `blocks` /
  `stages` sequences give one row per stage, with `stem` and `head` around them.
- Anything else: one row per top-level child.
MACs and receptive fields come from `resbone.analysis.trace`; tests/analysis/test_summary.py checks
the totals against torchvision's published figures and the fields against input gradients.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from resbone.analysis.trace import Tracer, run_traced

__all__ = ["ModelSummary", "StageSummary", "build_model", "count_macs", "count_params", "format_table",
           "matching_models", "model_table_markdown", "receptive_field", "summarize"]


@dataclass(frozen=True)
class StageSummary:
    """One row of the table. `stride` is None where the output is not a map (a classifier head);
    a receptive field axis is `math.inf` where the whole input reaches it (global pooling, SE)."""

    name: str
    output_shape: tuple[int, ...]
    stride: tuple[float, float] | None
    channels: int | None
    blocks: int | None
    params: int
    macs: int
    receptive_field: tuple[float, float] | None
    local_receptive_field: tuple[float, float] | None = None


@dataclass(frozen=True)
class ModelSummary:
    name: str
    input_shape: tuple[int, int, int]
    stages: list[StageSummary] = dataclass_field(default_factory=list)
    params: int = 0
    trainable_params: int = 0
    macs: int = 0

    def __str__(self) -> str:
        return format_table(self)


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
        raise KeyError(f"no module named {unknown[0]!r} in {type(model).__name__}; {_close(unknown[0], named)}")
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
        return _by_name(model, model_kwargs or {}, lambda m: _summarize(m, input_size, in_channels, model))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a registered model name, got {type(model).__name__}")
    if model_kwargs:
        raise TypeError("model_kwargs only applies when `model` is a registered name, not a module")
    return _summarize(model, input_size, in_channels, type(model).__name__)


def _summarize(model: nn.Module, input_size: Sequence[int], in_channels: int | None, name: str) -> ModelSummary:
    x = _example_input(model, input_size, in_channels)
    groups = _stage_groups(model)
    order: list[nn.Module] = []  # top modules in the order their forward starts
    owner = {m: g for g in groups for m in g.modules}
    running: list[_Group] = []
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
    stages = _finish_groups(groups, order, outputs, tracer)
    return ModelSummary(name=name, input_shape=tuple(x.shape[1:]), stages=stages,  # type: ignore[arg-type]
                        params=count_params(model), trainable_params=count_params(model, trainable_only=True),
                        macs=tracer.macs)


def format_table(summary: ModelSummary) -> str:
    """The summary as a fixed-width text table followed by the totals."""
    header = ("stage", "output", "stride", "channels", "blocks", "params", "MACs", "RF")
    rows = [header]
    for s in summary.stages:
        rows.append((s.name, "x".join(str(d) for d in s.output_shape), _pair_text(s.stride),
                     "-" if s.channels is None else str(s.channels), "-" if s.blocks is None else str(s.blocks),
                     f"{s.params:,}", _macs_text(s.macs), _field_text(s)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    left = {0, 1}
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    shape = "x".join(str(d) for d in summary.input_shape)
    lines.insert(0, f"{summary.name}  (input 1x{shape})")
    trainable = "" if summary.trainable_params == summary.params else f" ({summary.trainable_params:,} trainable)"
    lines.append("-" * len(lines[2]))
    for label, count, digits in (("params", summary.params, 2), ("MACs", summary.macs, 3)):
        short = f" = {_count_text(count, digits)}" if count >= 1000 else ""
        lines.append(f"total {label + ':':<7} {count:,}{trainable if label == 'params' else ''}{short}")
    return "\n".join(lines)


def model_table_markdown(names: Iterable[str] | None = None, *, input_size: Sequence[int] = (224, 224)) -> str:
    """A markdown table of registered models (default: all) with params and GMACs at `input_size`."""
    from resbone.models.registry import list_models

    names = list(list_models() if names is None else names)
    h, w = _check_size(input_size)
    lines = [f"| model | params | GMACs ({h}x{w}) |", "|---|---:|---:|"]
    for name in names:
        params, macs = _by_name(name, {}, lambda m: (count_params(m), count_macs(m, (h, w))))
        lines.append(f"| {name} | {params / 1e6:.2f} M | {macs / 1e9:.3f} |")
    return "\n".join(lines)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """`create_model(name, **kwargs)` on the meta device (shapes only), with errors that suggest names.
    Falls back to the CPU for a model whose construction needs real tensors."""
    from resbone.models.registry import create_model, is_model, list_models

    if not is_model(name):
        raise KeyError(f"unknown model {name!r}; {_close(name, list_models())} "
                       f"(`resbone list` shows all {len(list_models())})")
    try:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    except TypeError as error:
        named = [k for k in kwargs if f"'{k}'" in str(error)]
        if named and "multiple values" in str(error):
            raise TypeError(f"{name} fixes {named[0]!r} itself, so it cannot be overridden; pick the registered "
                            f"model that has the value you want (`resbone list`)") from error
        allowed = _model_arguments(name)
        # Prefer the key Python named ("unexpected keyword argument 'depht'"): a factory may accept
        # torchvision's spellings that the model class's signature does not list.
        bad = named or [k for k in kwargs if allowed and k not in allowed]
        if bad and allowed:
            raise TypeError(f"{name} has no argument {bad[0]!r}; {_close(bad[0], allowed)}") from error
        raise
    except (NotImplementedError, RuntimeError):
        return create_model(name, **kwargs)


def _by_name(name: str, kwargs: dict[str, Any], analyse: Callable[[nn.Module], Any]) -> Any:
    """`analyse(build_model(name, **kwargs))`, again on the CPU if an op has no meta-device kernel."""
    model = build_model(name, **kwargs)
    try:
        return analyse(model)
    except NotImplementedError:
        if next(iter(model.parameters()), torch.empty(0)).device.type != "meta":
            raise
    from resbone.models.registry import create_model

    return analyse(create_model(name, **kwargs))


def matching_models(pattern: str = "*") -> list[str]:
    """`list_models(pattern)`, but a pattern that matches nothing is a KeyError naming close names."""
    from resbone.models.registry import list_models

    names = list_models(pattern)
    if not names:
        raise KeyError(f"no registered model matches {pattern!r}; {_close(pattern, list_models())}")
    return names


# ---- internals ------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Group:
    name: str
    modules: list[nn.Module]
    blocks: int | None = None
    macs: int = 0
    last: nn.Module | None = None


_LAYER = re.compile(r"^layer(\d+)$")


_SEQUENCES = ("features", "blocks", "stages")  # torchvision MobileNetV2 / timm's names for the stage list


def _stage_groups(model: nn.Module) -> list[_Group]:
    """The candidate rows, one per top module (and one per element of a `features`/`blocks`/`stages`
    sequence); which of them form the stem and the head, and which blocks form one MobileNetV2 stage,
    is settled after the forward pass from the execution order and the output channels."""
    children = dict(model.named_children())
    groups = []
    if not any(_LAYER.match(n) for n in children):
        for sequence in _SEQUENCES:
            if isinstance(children.get(sequence), nn.Sequential):
                for name, module in children.pop(sequence).named_children():
                    groups.append(_Group(f"{sequence}.{name}", [module], _block_count(module)))
                break
    for name, module in children.items():
        groups.append(_Group(name, [module], _block_count(module) if _LAYER.match(name) else None))
    return groups


def _block_count(module: nn.Module) -> int:
    """Blocks in a stage: the elements of a plain sequence of blocks (not of a conv-norm-act triple)."""
    if isinstance(module, (nn.Sequential, nn.ModuleList)) and all(next(m.children(), None) for m in module):
        return len(module)
    blocks = getattr(module, "blocks", None)  # a timm stage: downsample + blocks
    return len(blocks) if isinstance(blocks, (nn.Sequential, nn.ModuleList)) else 1


def _finish_groups(groups: list[_Group], order: list[nn.Module], outputs: dict[nn.Module, Any],
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
        out = _main_tensor(outputs[g.last])
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


def _merge(name: str, parts: list[_Group]) -> _Group | None:
    if not parts:
        return None
    # `parts` is in execution order, so the last one's output is the merged stage's output.
    return _Group(name, [m for g in parts for m in g.modules], None, sum(g.macs for g in parts), parts[-1].last)


def _merge_sequence(ran: list[_Group], outputs: dict[nn.Module, Any]) -> list[_Group]:
    """Rows for a model built around one sequence: what runs before it is the `stem`, after it the
    `head`; consecutive single blocks with equal output channels (MobileNetV2's `features`) become one
    stage `features.N-M`, while elements that are stages themselves (timm's `stages`) stay rows."""
    def channels(g: _Group) -> int | None:
        out = _main_tensor(outputs[g.last])
        return int(out.shape[1]) if out is not None and out.dim() > 1 else None

    features = [g for g in ran if g.name.startswith(_SEQUENCES)]
    first_feature, last_feature = ran.index(features[0]), ran.index(features[-1])
    runs: list[list[_Group]] = []
    for g in features:
        if runs and g.blocks == 1 and runs[-1][-1].blocks == 1 and channels(runs[-1][-1]) == channels(g):
            runs[-1].append(g)
        else:
            runs.append([g])
    stem = _merge("stem", ran[:first_feature])
    stages = [] if stem is None else [stem]
    for run in runs:
        name = run[0].name if len(run) == 1 else f"{run[0].name}-{run[-1].name.split('.')[-1]}"
        stages.append(_Group(name, [m for g in run for m in g.modules], sum(g.blocks or 1 for g in run),
                             sum(g.macs for g in run), run[-1].last))
    head = _merge("head", ran[last_feature + 1:])
    return stages + ([head] if head is not None else [])


def _run(model: nn.Module, x: torch.Tensor, tracer: Tracer) -> Any:
    try:
        return run_traced(model, x, tracer)
    except NotImplementedError:  # an op without a meta kernel (a RuntimeError subclass): see `_by_name`
        raise
    except RuntimeError as error:  # e.g. a kernel larger than the map: the input is too small
        raise ValueError(f"{type(model).__name__} cannot run on an input of shape {tuple(x.shape)}: {error}") from None


def _keep_output(store: dict, name: str):
    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        store[name] = _main_tensor(output)
    return hook


def _main_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in reversed(value):  # a backbone returns (C2, ..., C5): the stage's output is the last
            t = _main_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        return _main_tensor(list(value.values()))
    return None


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(input_size) if isinstance(input_size, (list, tuple)) else (input_size, input_size)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
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


def _model_arguments(name: str) -> list[str]:
    import inspect

    from resbone.models.registry import create_model

    try:
        with torch.device("meta"):
            model = create_model(name)
    except Exception:  # noqa: BLE001  (only used to phrase a better error message)
        return []
    return [p for p in inspect.signature(type(model).__init__).parameters if p not in ("self", "args", "kwargs")]


def _close(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    if close:
        return "did you mean " + ", ".join(close) + "?"
    return "choose from " + ", ".join(choices[:8]) + (f", ... ({len(choices)} in all)" if len(choices) > 8 else "")


def _pair_text(pair: tuple[float, float] | None) -> str:
    if pair is None:
        return "-"
    texts = ["global" if math.isinf(v) else (str(int(v)) if float(v).is_integer() else f"{v:.2f}") for v in pair]
    return texts[0] if texts[0] == texts[1] else "x".join(texts)


def _field_text(stage: StageSummary) -> str:
    text = _pair_text(stage.receptive_field)
    if stage.local_receptive_field is not None and stage.local_receptive_field != stage.receptive_field:
        text += f" ({_pair_text(stage.local_receptive_field)} local)"
    return text


def _macs_text(macs: int) -> str:
    return _count_text(macs, 3) if macs >= 1e9 else _count_text(macs, 1, giga_from=1e9)


def _count_text(count: int, digits: int, *, giga_from: float = 1e8) -> str:
    # Totals from 0.1 G on are in G, the unit torchvision publishes (mobilenet_v2: 0.301 GMACs).
    for unit, scale, start in (("G", 1e9, giga_from), ("M", 1e6, 1e6), ("K", 1e3, 1e3)):
        if count >= start:
            return f"{count / scale:.{digits}f} {unit}"
    return str(count)
