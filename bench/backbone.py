"""resnet50 side by side: resbone vs torchvision vs timm, eager forward and one SGD train step.

    python -m bench.backbone                  # batch 8 at 224, CPU (or --device cuda)
    python -m bench.backbone --quick          # a tiny run for smoke tests (numbers meaningless)
    python -m bench.backbone --channels-last  # all three in channels_last

The three models get the same weights (identical state_dict keys), so the script also prints how far
their outputs are apart. Timing is bench.timing's: interleaved repeats, medians, and the speed of each
relative to torchvision (> 1.00x = faster). Timings are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import load_line, ratio_table, time_phases


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


def measure(models: dict[str, nn.Module], *, batch: int, size: int, warmup: int, repeats: int,
            device: torch.device, channels_last: bool) -> dict[str, dict[str, float]]:
    """Median seconds per model for 'forward' (eval, inference mode) and 'train step' (SGD)."""
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

    return time_phases(models, (("forward", forward, False), ("train step", train_step, True)),
                       warmup=warmup, repeats=repeats,
                       device=device)


def output_gap(models: dict[str, nn.Module], device: torch.device) -> float:
    """Max abs difference of the eval outputs of the three models (same weights) on one small batch."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        outs = [m.eval()(x).float() for m in models.values()]
    return max(float((o - outs[0]).abs().max()) for o in outs[1:])


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
    print(ratio_table(results, ["forward", "train step"], batch=args.batch))
    print(f"max abs output difference between the three (same weights): {gap:.2e}")
    print(load_line(load_before, load_after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
