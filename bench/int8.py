"""The int8 rows of bench.backbone and bench.fcos (`--int8`): resbone.deploy.quantize on every quantized engine
this torch has, beside float32 torchvision eager, compiled float32 and torchvision's own quantized ResNet
(eager flow: fuse_model, prepare, calibrate, convert, `x86` qconfig), all calibrated on the same batches.

int8 runs on the CPU only. Which engine is fastest depends on the CPU (fbgemm's VNNI kernels, oneDNN's AMX
ones): every figure is printed with the CPU's int8 features (resbone.deploy.quantize.cpu_int8_line).
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
from torch import nn

ENGINES = ("x86", "fbgemm", "onednn")


def engines() -> list[str]:
    return [e for e in ENGINES if e in torch.backends.quantized.supported_engines]


def calibration(x: torch.Tensor, count: int) -> list[torch.Tensor]:
    """`count` batches shaped like `x`: x itself and random ones (what the issue measured with)."""
    g = torch.Generator().manual_seed(1)
    return [x.contiguous()] + [torch.randn(x.shape, generator=g) for _ in range(count - 1)]


def int8_step(model: nn.Module, engine: str, *args) -> Callable[[], object]:
    """One inference call under `engine` (the quantized engine is process-wide: set at every call)."""
    def step() -> object:
        torch.backends.quantized.engine = engine
        with torch.inference_mode():
            return model(*args)
    return step


def torchvision_int8(arch: str, reference: nn.Module, batches: list[torch.Tensor], *, qconfig=None,
                     **kwargs) -> nn.Module | None:
    """torchvision's quantized `arch` (None where torchvision has none) with `reference`'s float weights, by its
    own eager flow (fuse_model, prepare, calibrate on `batches`, convert); qconfig: x86's default unless given;
    kwargs go to torchvision's builder (e.g. num_classes)."""
    import torchvision.models.quantization as tvq
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    if not hasattr(tvq, arch):
        return None
    model = getattr(tvq, arch)(weights=None, quantize=False, **kwargs)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval().fuse_model(is_qat=False)
    model.qconfig = get_default_qconfig("x86") if qconfig is None else qconfig
    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(model, inplace=True)
        with torch.no_grad():
            for batch in batches:
                model(batch)
        return convert(model, inplace=True)


def backbone_steps(arch: str, models: dict[str, nn.Module], compiled: nn.Module | None, x: torch.Tensor,
                   batches: int) -> dict[str, Callable[[], object]]:
    """float32 torchvision eager (the reference) and compiled, torchvision int8, resbone int8 per engine."""
    from resbone.deploy.quantize import quantize

    reference = models["torchvision eager"]
    steps = {"torchvision eager": int8_step(reference, "x86", x)}
    if compiled is not None:
        steps["torchvision compiled"] = int8_step(compiled, "x86", x.to(memory_format=torch.channels_last))
    calib = calibration(x, batches)
    theirs = torchvision_int8(arch, reference, calib)
    if theirs is not None:
        steps["torchvision int8 (x86)"] = int8_step(theirs, "x86", x)
    for engine in engines():
        steps[f"resbone int8 ({engine})"] = int8_step(quantize(models["resbone eager"], calib, backend=engine),
                                                      engine, x)
    return steps


def fcos_network_steps(models: dict[str, nn.Module], images: list[torch.Tensor],
                       batches: int) -> dict[str, Callable[[], object]]:
    """The dense network (backbone, FPN, head) of torchvision's and resbone's FCOS in float32 and resbone's
    int8 network per engine, on the batch resbone's transform makes of `images`."""
    from resbone.deploy.detector_network import DetectorNetwork
    from resbone.deploy.quantize import quantize

    ours = models["resbone eager"]
    batch = ours.transform(images)[0]
    theirs = models["torchvision eager"]

    def torchvision_network() -> object:
        with torch.inference_mode():
            features = list(theirs.backbone(batch).values())
            return theirs.head(features)

    # the float network as quantize sees it (DetectorNetwork: the detector's own, head unrolled per level)
    steps = {"torchvision eager": torchvision_network, "resbone eager": int8_step(DetectorNetwork(ours), "x86", batch)}
    calib = [list(images)] + [[torch.rand(im.shape, generator=torch.Generator().manual_seed(i)) for im in images]
                              for i in range(batches - 1)]
    for engine in engines():
        int8 = quantize(ours, calib, backend=engine)  # a copy, the network int8
        steps[f"resbone int8 ({engine})"] = int8_step(int8.int8_network, engine, batch)
    return steps


def output_gaps(steps: dict[str, Callable[[], object]]) -> str:
    """Max abs difference and top-1 agreement of each int8 classifier's logits with float32 torchvision's
    (these calls also build the compiled contender)."""
    outputs = {name: step() for name, step in steps.items()}
    ref = outputs["torchvision eager"]
    return "; ".join(f"{name}: max |diff| {float((out - ref).abs().max()):.3f}, top-1 agreement "
                     f"{float((out.argmax(1) == ref.argmax(1)).float().mean()):.0%}"
                     for name, out in outputs.items() if name != "torchvision eager")


def op_profile(step: Callable[[], object]) -> dict[str, tuple[int, float]]:
    """{op: (calls, self CPU ms)} of one call of `step` (torch.profiler), after one call to warm up."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages()}


def op_comparison(steps: dict[str, Callable[[], object]], names: Sequence[str], *, rows: int = 12) -> str:
    """The int8 contenders `names` op by op: calls and self CPU ms of each op in one call, ops by the first
    contender's time (where two int8 graphs differ, the op or its count shows it)."""
    profiles = {name: op_profile(steps[name]) for name in names}
    ops = sorted(set().union(*profiles.values()), key=lambda op: -max(p.get(op, (0, 0.0))[1] for p in
                                                                      profiles.values()))[:rows]
    width = max(len(op) for op in ops)
    lines = [f"{'op':{width}}  " + "  ".join(f"{name + ' calls, ms':>34}" for name in names)]
    for op in ops:
        cells = [f"{profiles[n].get(op, (0, 0.0))[0]:>25} {profiles[n].get(op, (0, 0.0))[1]:8.1f}" for n in names]
        lines.append(f"{op:{width}}  " + "  ".join(cells))
    totals = "  ".join(f"{sum(ms for _, ms in profiles[n].values()):>34.1f}" for n in names)
    return "\n".join([*lines, f"{'total self CPU ms':{width}}  {totals}"])
