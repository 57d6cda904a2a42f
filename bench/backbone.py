"""resnet50 side by side: torchvision, timm and resbone, eager and compiled, inference and one SGD train step.

    python -m bench.backbone                  # batch 8 at 224, CPU (or --device cuda)
    python -m bench.backbone --profile        # and the top ops of an inference pass and a train step
    python -m bench.backbone --quick          # a tiny run for smoke tests (numbers meaningless)
    python -m bench.backbone --int8           # and int8 (bench.int8): resbone per engine, torchvision's quantized
    python -m bench.backbone --int8 --profile # and the two x86 int8 graphs op by op (calls, self CPU ms)

Inference: torchvision, timm and resbone eager; torch.compile(torchvision) with the options of resbone's fast
path (inductor freezing; `--mode`); resbone's fast path, `resbone.deploy.prepare_for_inference(compile=True)`
(norms folded, channels_last, compiled with freezing). Train step: the three eager models and resbone
compiled (torch.compile of the model, channels_last). All models hold the same weights (identical
state_dict keys), so the script also prints how far their outputs are apart. GFLOP/s count 2 FLOPs per
multiply-add (resbone.analysis.count_macs; a train step as 3 forward passes) next to the machine's peak:
a big matrix multiply measured here (sgemm in float32). Timing is bench.timing's: interleaved repeats,
medians, speeds relative to torchvision eager (> 1.00x = faster). Timings are printed, never asserted.
"""
from __future__ import annotations

import argparse
import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import (
    Machine,
    Section,
    add_common_arguments,
    autocast,
    header,
    peak,
    section_table,
    setup,
    time_interleaved,
    top_ops,
)

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def build_models(arch: str, device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    """The eager contenders, same weights: torchvision's model and its state_dict loaded into the others."""
    import timm
    import torchvision

    from resbone.factory import create_model

    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)()
    models = {"torchvision eager": reference, "timm eager": timm.create_model(arch, pretrained=False),
              "resbone eager": create_model(arch)}
    state = reference.state_dict()
    for model in models.values():
        model.load_state_dict(state, strict=True)  # same names in all three: same weights
        model.to(device).eval()
        if channels_last:
            model.to(memory_format=torch.channels_last)
    return models


def inference_contenders(models: dict[str, nn.Module], args) -> dict[str, nn.Module]:
    """The eager models, torch.compile(torchvision) and resbone's fast path."""
    from resbone.deploy import prepare_for_inference
    from resbone.deploy.inference import compile_options

    contenders = dict(models)
    if not args.no_compile:
        contenders["torchvision compiled"] = torch.compile(copy.deepcopy(models["torchvision eager"]),
                                                           options=compile_options(args.mode))
    contenders["resbone fast path"] = prepare_for_inference(models["resbone eager"], compile=not args.no_compile,
                                                            mode=args.mode)
    return contenders


def train_contenders(models: dict[str, nn.Module], args) -> dict[str, nn.Module]:
    contenders = dict(models)
    if not args.no_compile:
        model = copy.deepcopy(models["resbone eager"]).to(memory_format=torch.channels_last)
        options = {} if args.mode == "default" else {"mode": args.mode}
        contenders["resbone compiled"] = torch.compile(model, **options)
    return contenders


def inference_step(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str):
    def step() -> object:
        with torch.inference_mode(), autocast(device, amp):
            return model(x)
    return step


def train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, device: torch.device, amp: str):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        return loss
    return step


def output_gap(steps: dict[str, Callable[[], torch.Tensor]]) -> float:
    """Max abs difference of every inference contender's output from torchvision's; these calls on the
    bench's batch (and autocast) also build the compiled contenders, once, for what they are timed on."""
    outs = [step().float() for step in steps.values()]
    return max(float((o - outs[0]).abs().max()) for o in outs[1:])


def run(args, device: torch.device) -> tuple[list[Section], dict[str, str], float, list[str]]:
    from resbone.analysis import count_macs

    models = build_models(args.arch, device, args.channels_last)
    flops = 2.0 * count_macs(models["resbone eager"], (args.size, args.size)) * args.batch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    x_last = x.to(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    timing = dict(warmup=args.warmup, repeats=args.repeats, device=device)

    inference = inference_contenders(models, args)
    steps = {n: inference_step(m, x_last if n == "resbone fast path" or args.channels_last else x, device, args.amp)
             for n, m in inference.items()}
    gap = output_gap(steps)
    forward = Section(f"{args.arch} inference, batch {args.batch}x3x{args.size}x{args.size}", args.batch,
                      time_interleaved(steps, **timing), flops)
    profiles = {"inference (resbone eager)": top_ops(steps["resbone eager"], device)} if args.profile else {}
    int8_sections, notes = [], []
    if args.int8:  # before the train steps change the weights and the modes
        section, note = int8_section(args, models, inference.get("torchvision compiled"), x.cpu())
        int8_sections, notes = [section], [note]

    trained = train_contenders(models, args)
    for model in trained.values():
        model.train()
    steps = {n: train_step(m, x_last if n == "resbone compiled" or args.channels_last else x, target, device,
                           args.amp) for n, m in trained.items()}
    train = Section(f"{args.arch} SGD train step, batch {args.batch}x3x{args.size}x{args.size}", args.batch,
                    time_interleaved(steps, **timing), 3 * flops)
    if args.profile:
        profiles["train step (resbone eager)"] = top_ops(steps["resbone eager"], device)
    return [forward, *int8_sections, train], profiles, gap, notes


def int8_section(args, models: dict[str, nn.Module], compiled: nn.Module | None, x: torch.Tensor
                 ) -> tuple[Section, str]:
    from bench import int8

    steps = int8.backbone_steps(args.arch, {k: m.cpu() for k, m in models.items()}, compiled, x, args.calib_batches)
    note = f"int8 vs float32 torchvision eager, logits: {int8.output_gaps(steps)}"
    # the int8 rows are ~5x cheaper than float32's: more repeats for the same confidence in their ratio
    seconds = time_interleaved(steps, warmup=args.warmup, repeats=args.int8_repeats, device=torch.device("cpu"))
    if args.profile:
        note += ("\nint8 op by op, one call each (torch.profiler):\n"
                 + int8.op_comparison(steps, ["torchvision int8 (x86)", "resbone int8 (x86)"]))
    return Section(f"{args.arch} int8 inference (CPU), batch {args.batch}x3x{args.size}x{args.size}", args.batch,
                   seconds), note


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backbone", description=__doc__.splitlines()[0])
    add_common_arguments(parser, batch=8, size=224, warmup=2, repeats=7)
    parser.add_argument("--arch", choices=ARCHS, default="resnet50")
    parser.add_argument("--channels-last", action="store_true", help="the eager models in channels_last too")
    parser.add_argument("--int8", action="store_true", help="an int8 section (CPU): resbone.deploy.quantize per "
                        "quantized engine, torchvision's quantized model, float32 eager and compiled")
    parser.add_argument("--calib-batches", type=int, default=4, help="int8 calibration batches (default 4)")
    parser.add_argument("--int8-repeats", type=int, default=15, help="timed repeats of the int8 section (default 15)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.warmup, args.repeats, args.calib_batches, args.int8_repeats = 2, 32, 0, 1, 1, 1
    device = setup(args)
    with Machine() as machine:
        peak_flops, peak_line = peak(args, device)
        sections, profiles, gap, notes = run(args, device)
    print(header(f"{args.arch}{' channels_last' if args.channels_last else ''}", args, device))
    print(peak_line)
    print(section_table(sections, peak_flops=peak_flops))
    print(f"max abs output difference from torchvision eager (same weights): {gap:.2e}")
    for title, table in profiles.items():
        print(f"\ntop ops by self time, {title}:\n{table}")
    if args.int8:
        from resbone.deploy.quantize import cpu_int8_line
        print("\n".join([*notes, cpu_int8_line()]))
    print(machine.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
