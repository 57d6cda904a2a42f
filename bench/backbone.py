"""resnet50 side by side: resbone vs torchvision vs timm, eager forward and one SGD train step.

    python -m bench.backbone                  # batch 8 at 224, CPU (or --device cuda)
    python -m bench.backbone --quick          # a tiny run for smoke tests (numbers meaningless)
    python -m bench.backbone --channels-last  # all three in channels_last

The three models get the same weights (identical state_dict keys), so the script also prints how far
their outputs are apart. Each repeat times every model once, in a rotating order, so a machine that gets
busier or quieter during the run affects all three alike; the table shows medians and the speed of each
relative to torchvision (> 1.00x = faster). Timings are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def build_models(device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    import timm
    import torchvision

    from resbone.models.registry import create_model

    reference = torchvision.models.resnet50()
    models = {"resbone": create_model("resnet50"), "torchvision": reference,
              "timm": timm.create_model("resnet50", pretrained=False)}
    state = reference.state_dict()
    for name, model in models.items():
        model.load_state_dict(state, strict=True)  # same names in all three: same weights
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
    return models


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(step: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start
    return run


def measure(models: dict[str, nn.Module], *, batch: int, size: int, warmup: int, repeats: int,
            device: torch.device, channels_last: bool) -> dict[str, dict[str, float]]:
    """Median seconds per model for 'forward' (eval, inference mode) and 'train step'."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=generator).to(device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    optimizers = {n: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for n, m in models.items()}

    def forward(name: str) -> Callable[[], object]:
        def step() -> object:
            with torch.inference_mode():
                return models[name](x)
        return step

    def train_step(name: str) -> Callable[[], object]:
        def step() -> object:
            optimizers[name].zero_grad(set_to_none=True)
            loss = F.cross_entropy(models[name](x), target)
            loss.backward()
            optimizers[name].step()
            return loss
        return step

    timer, names = _timer(device), list(models)
    results: dict[str, dict[str, float]] = {n: {} for n in names}
    for kind, make, train in (("forward", forward, False), ("train step", train_step, True)):
        for model in models.values():
            model.train(train)
        steps = {n: make(n) for n in names}
        for _ in range(warmup):
            for n in names:
                steps[n]()
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            for n in names[r % len(names):] + names[:r % len(names)]:
                times[n].append(timer(steps[n]))
        for n in names:
            results[n][kind] = statistics.median(times[n])
    return results


def output_gap(models: dict[str, nn.Module], device: torch.device) -> float:
    """Max abs difference of the eval outputs of the three models (same weights) on one small batch."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        outs = [m.eval()(x).float() for m in models.values()]
    return max(float((o - outs[0]).abs().max()) for o in outs[1:])


def format_results(results: dict[str, dict[str, float]], batch: int) -> str:
    kinds = ["forward", "train step"]
    header = f"{'model':<12}" + "".join(f"{k + ' ms':>16}{'vs tv':>8}" for k in kinds)
    lines = [header, "-" * len(header)]
    for name, row in results.items():
        cells = "".join(f"{row[k] * 1e3:>16.1f}{results['torchvision'][k] / row[k]:>7.2f}x" for k in kinds)
        lines.append(f"{name:<12}{cells}")
    lines.append(f"(median per call of batch {batch}; 'vs tv' = torchvision time / model time, > 1.00x is faster)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backbone", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--quick", action="store_true", help="batch 2 at 32 px, no warmup, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.warmup, args.repeats = 2, 32, 0, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    models = build_models(device, args.channels_last)
    gap = output_gap(models, device)
    results = measure(models, batch=args.batch, size=args.size, warmup=args.warmup, repeats=args.repeats,
                      device=device, channels_last=args.channels_last)
    load_after = os.getloadavg()
    layout = "channels_last" if args.channels_last else "contiguous"
    print(f"resnet50, {device}, batch {args.batch}x3x{args.size}x{args.size}, {layout}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.warmup} warmup + {args.repeats} interleaved repeats")
    print(format_results(results, args.batch))
    print(f"max abs output difference between the three (same weights): {gap:.2e}")
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
