"""Shared by the side-by-side benchmarks (bench.backbone, ...): interleaved timing and the ratio table.

Each repeat times every contender once, in a rotating order, so a machine that gets busier or quieter
during the run affects all alike; results are medians. Timings are printed, never asserted.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Mapping, Sequence

import torch


def time_interleaved(steps: Mapping[str, Callable[[], object]], *, warmup: int, repeats: int,
                     device: torch.device) -> dict[str, float]:
    """Median seconds of one call of each step; the steps run in turn, the first one rotating."""
    names = list(steps)

    def timed(step: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(steps[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def time_phases(models: Mapping[str, torch.nn.Module],
                phases: Sequence[tuple[str, Callable[[str], Callable[[], object]], bool]], *, warmup: int,
                repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median seconds of each phase (name, step factory taking a model name, train mode) for every model,
    the models interleaved within a phase; the models are left in eval mode."""
    results: dict[str, dict[str, float]] = {n: {} for n in models}
    for kind, make, train in phases:
        for model in models.values():
            model.train(train)
        medians = time_interleaved({n: make(n) for n in models}, warmup=warmup, repeats=repeats, device=device)
        for n, seconds in medians.items():
            results[n][kind] = seconds
    for model in models.values():
        model.eval()
    return results


def ratio_table(results: Mapping[str, Mapping[str, float]], kinds: Sequence[str], *, batch: int,
                reference: str = "torchvision") -> str:
    """Rows of milliseconds per kind, each with the speed relative to `reference` (> 1.00x = faster)."""
    width = max(12, *(len(name) + 2 for name in results))
    header = f"{'model':<{width}}" + "".join(f"{k + ' ms':>16}{'ratio':>8}" for k in kinds)
    lines = [header, "-" * len(header)]
    for name, row in results.items():
        cells = "".join(f"{row[k] * 1e3:>16.1f}{results[reference][k] / row[k]:>7.2f}x" for k in kinds)
        lines.append(f"{name:<{width}}{cells}")
    lines.append(f"(median per call of batch {batch}; ratio = {reference} time / model time, > 1.00x is faster)")
    return "\n".join(lines)


def load_line(before: Sequence[float], after: Sequence[float]) -> str:
    """How busy the machine was: the numbers are only comparable within one run."""
    return f"load average (1 min) before / after: {before[0]:.2f} / {after[0]:.2f} on {os.cpu_count()} CPUs"
