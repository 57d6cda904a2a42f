"""The architecture table as data and as text: one `StageSummary` row per stage, a `ModelSummary` with
the totals, and `format_table`, whose totals print in torchvision's units (resnet50: 25,557,032 params,
4.089 G MACs; tests/analysis/test_summary.py and tests/cli/test_summary.py check the printed figures).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field

__all__ = ["ModelSummary", "StageSummary", "format_table"]


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
