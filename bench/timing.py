"""Shared by the side-by-side benchmarks (bench.backbone, bench.fcos): interleaved timing, the ratio table,
the machine's matrix-multiply peak and a profiler's top ops.

Each repeat times every contender of a section once, in a rotating order, so a machine that gets busier or
quieter during the run affects all alike; results are medians. Timings are printed, never asserted.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch

REFERENCE = "torchvision eager"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: Mapping[str, Callable[[], object]], *, warmup: int, repeats: int,
                     device: torch.device) -> dict[str, float]:
    """Median seconds of one call of each step; the steps run in turn, the first one rotating."""
    names = list(steps)

    def timed(step: Callable[[], object]) -> float:
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(steps[name]))
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class Section:
    """One comparison: contenders doing the same work (`batch` images per call, `flops` per call if known)."""

    title: str
    batch: int
    seconds: dict[str, float] = field(default_factory=dict)
    flops: float | None = None


def section_table(sections: Sequence[Section], *, reference: str = REFERENCE,
                  peak_flops: float | None = None) -> str:
    """Per section: milliseconds, speed relative to `reference` (> 1.00x = faster), images/s, and with
    `flops` the achieved GFLOP/s (and its share of `peak_flops`)."""
    width = max(18, *(len(name) + 2 for s in sections for name in s.seconds))
    header = f"{'contender':<{width}}{'ms':>11}{'ratio':>8}{'img/s':>10}{'GFLOP/s':>10}{'of peak':>9}"
    lines = []
    for section in sections:
        lines += ["", section.title, header, "-" * len(header)]
        base = section.seconds.get(reference)
        for name, seconds in section.seconds.items():
            ratio = f"{base / seconds:>7.2f}x" if base else f"{'-':>8}"
            gflops = section.flops / seconds / 1e9 if section.flops else None
            share = f"{gflops * 1e9 / peak_flops:>8.1%}" if gflops and peak_flops else f"{'':>9}"
            lines.append(f"{name:<{width}}{seconds * 1e3:>11.1f}{ratio}{section.batch / seconds:>10.1f}"
                         f"{f'{gflops:.1f}' if gflops else '':>10}{share}")
    lines.append(f"(median per call; ratio = {reference} time / contender time, > 1.00x is faster)")
    return "\n".join(lines)


def matmul_peak(device: torch.device, *, dtype: torch.dtype = torch.float32, n: int = 4096,
                repeats: int = 5) -> float:
    """FLOP/s of a big square matrix multiply (sgemm for float32): what this machine's cores can reach."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    seconds = time_interleaved({"mm": lambda: torch.mm(a, b)}, warmup=1, repeats=repeats, device=device)["mm"]
    return 2.0 * n ** 3 / seconds


def peak(args, device: torch.device) -> tuple[float, str]:
    """The FLOP/s the 'of peak' column divides by (--peak-tflops, else measured) and a line saying so."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp, torch.float32)
    measured = matmul_peak(device, dtype=dtype, n=512 if args.quick else 8192 if device.type == "cuda" else 4096)
    chosen = args.peak_tflops * 1e12 if args.peak_tflops else measured
    return chosen, (f"matrix-multiply peak measured here ({str(dtype).replace('torch.', '')} mm): "
                    f"{measured / 1e9:.1f} GFLOP/s; 'of peak' is relative to {chosen / 1e9:.1f} GFLOP/s")


def top_ops(step: Callable[[], object], device: torch.device, *, rows: int = 12) -> str:
    """The ops that took the most self CPU time (and CUDA time on a GPU) in one call of `step`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=48)


@contextlib.contextmanager
def autocast(device: torch.device, amp: str) -> Iterator[None]:
    """bf16 / fp16 autocast for `amp` 'bf16' / 'fp16'; nothing for 'off'."""
    if amp == "off":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16):
        yield


def setup(args) -> torch.device:
    """The device and thread count the arguments ask for (a clear error for a GPU that is not there)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA device on this machine; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def add_common_arguments(parser, *, batch: int, size: int, warmup: int, repeats: int) -> None:
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                        help="autocast for every contender (the GPU script uses bf16)")
    parser.add_argument("--mode", default="default", help="torch.compile mode of the compiled contenders, "
                        "e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled contenders (no compile time)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of an inference pass and a "
                        "training step (torch.profiler, by self CPU time)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (e.g. 989 for the "
                        "H100/H200 bf16 dense); default: measured with a big matrix multiply")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke test, numbers "
                        "meaningless")


def header(title: str, args, device: torch.device) -> str:
    return (f"{title}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, amp {args.amp}, "
            f"compile mode {args.mode}{' (compiled contenders skipped)' if args.no_compile else ''}, "
            f"{args.warmup} warmup + {args.repeats} interleaved repeats")


class Machine:
    """How busy the machine was around a run, and how long the run took (compiling included): the numbers
    are only comparable within one run."""

    def __enter__(self) -> "Machine":
        self.load_before, self.start = os.getloadavg(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.load_after, self.seconds = os.getloadavg(), time.perf_counter() - self.start

    def line(self) -> str:
        return (f"load average (1 min) before / after: {self.load_before[0]:.2f} / {self.load_after[0]:.2f} on "
                f"{os.cpu_count()} CPUs; the whole run took {self.seconds:.0f} s (model building and compiling "
                f"included)")
