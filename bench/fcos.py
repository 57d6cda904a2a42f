"""FCOS side by side: resbone vs torchvision, inference (eager, fast path, onnxruntime) and SGD train iterations.

    python -m bench.fcos                # R-50-FPN batch 2 at 512 px, the demo's R-18-FPN batch 8 at 96, CPU
    python -m bench.fcos --compile      # and resbone's compiled model in the train rows
    python -m bench.fcos --profile      # and the top ops of an inference pass and a train iteration
    python -m bench.fcos --quick        # a tiny run for smoke tests (numbers meaningless)
    python -m bench.fcos --int8         # and the R-50-FPN network int8 on the CPU (bench.int8), per engine

R-50-FPN: both detectors are torchvision's fcos_resnet50_fpn as it is built for training from ImageNet
weights (FrozenBN, stem + layer1 frozen); resbone's is configured with TORCHVISION_FCOS_OVERRIDES and loaded
with torchvision's weights through resbone.convert, so both compute the same thing (the script prints how
far their detections are apart). The classification weights are scaled up so that post-processing has
boxes to threshold, sort and suppress (up to the 100-detection cap), as with a trained model. Inference
rows: both eager, resbone's fast path (resbone.deploy.prepare_for_inference: norms folded, channels_last,
the dense network compiled with inductor freezing; `--no-compile` leaves it eager) and onnxruntime
(resbone.deploy.export_onnx of the whole detector + the numpy post-processing, OnnxDetector).
Demo R-18-FPN: resbone/configs/fcos/shapes_R_18_FPN.yaml (GroupNorm R-18 body half as wide as torchvision's, 64-channel
pyramid, 4 convs per tower) against torchvision's FCOS built with the same layers and weights (its body is
timm's ResNet with those widths); its loss options differ in details (torchvision's), the work per
iteration is the same. Both train rows use SGD (the demo itself trains with AdamW).
Timing is bench.timing's: interleaved repeats, medians, speeds relative to torchvision eager (> 1.00x =
faster). Timings are never asserted.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
from typing import Callable, Sequence

import torch
from torch import nn

from bench import timing

NUM_CLASSES = 91  # torchvision's COCO head: 91 logit channels
DEMO_CONFIG = "resbone/configs/fcos/shapes_R_18_FPN.yaml"


def build_r50(size: int, device: torch.device) -> dict[str, nn.Module]:
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.fcos import FCOS as TorchvisionFCOS
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from resbone.detection.defaults import TORCHVISION_FCOS_OVERRIDES, detector_cfg

    torch.manual_seed(0)
    # What fcos_resnet50_fpn builds when given ImageNet backbone weights (trainable_backbone_layers=3).
    body = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                 extra_blocks=LastLevelP6P7(256, 256))
    reference = TorchvisionFCOS(body, NUM_CLASSES, min_size=size, max_size=size)
    with torch.no_grad():
        head = reference.head.classification_head.cls_logits
        head.weight.normal_(0, 0.05)
        head.bias.fill_(-4.0)
    overrides = {k: dict(v) for k, v in TORCHVISION_FCOS_OVERRIDES.items()}
    overrides["MODEL"] = {**overrides["MODEL"],
                          "FCOS": {**overrides["MODEL"]["FCOS"], "NUM_CLASSES": NUM_CLASSES + 1}}
    overrides["INPUT"] = {**overrides["INPUT"], "MIN_SIZE_TRAIN": (size,), "MAX_SIZE_TRAIN": size,
                          "MIN_SIZE_TEST": size, "MAX_SIZE_TEST": size}
    return _pair(reference, detector_cfg(overrides), device)


def build_demo(size: int, device: torch.device) -> dict[str, nn.Module]:
    """The demo's detector and torchvision's FCOS with the same layers: the body is timm's ResNet-18 with the
    config's widths (GroupNorm, RES2_OUT_CHANNELS * 2**i per stage, a STEM_OUT_CHANNELS stem), the pyramid
    and head torchvision's."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.fcos import FCOS as TorchvisionFCOS
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from resbone.detection.config import load_cfg

    torch.manual_seed(0)
    cfg = load_cfg(DEMO_CONFIG, ["INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MAX_SIZE_TRAIN", str(size),
                                 "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)])
    channels, classes = int(cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS), int(cfg.MODEL.FCOS.NUM_CLASSES) - 1
    width = int(cfg.MODEL.RESNETS.RES2_OUT_CHANNELS)
    resnet = timm_basic_resnet([2, 2, 2, 2], width, int(cfg.MODEL.RESNETS.STEM_OUT_CHANNELS),
                               lambda planes: nn.GroupNorm(32, planes))
    body = BackboneWithFPN(resnet, {"layer2": "0", "layer3": "1", "layer4": "2"}, [width * 2, width * 4, width * 8],
                           channels, extra_blocks=LastLevelP6P7(channels, channels))
    head = FCOSHead(channels, 1, classes, num_convs=int(cfg.MODEL.FCOS.NUM_CONVS))
    reference = TorchvisionFCOS(body, classes, min_size=size, max_size=size, head=head)
    return _pair(reference, cfg, device)


def timm_basic_resnet(layers: list[int], width: int, stem: int, norm: Callable[[int], nn.Module]) -> nn.Module:
    """timm's BasicBlock ResNet with stage widths width * 2**i (timm's `channels=`) and a `stem`-wide 7x7 stem
    (timm's is 64 wide: a narrower one is swapped in, with layer1's first conv, and its projection shortcut
    dropped when layer1 keeps the stem's width), normalized by `norm(channels)`."""
    from timm.models.resnet import BasicBlock, ResNet

    resnet = ResNet(BasicBlock, layers, num_classes=0, channels=[width * 2 ** i for i in range(4)],
                    norm_layer=lambda planes, **_: norm(planes))
    if stem != 64:
        resnet.conv1, resnet.bn1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False), norm(stem)
        resnet.layer1[0].conv1 = nn.Conv2d(stem, width, 3, 1, 1, bias=False)
        if stem == width:
            resnet.layer1[0].downsample = None
    return resnet


def _pair(reference: nn.Module, cfg, device: torch.device) -> dict[str, nn.Module]:
    from resbone.convert.torchvision import fcos_from_torchvision
    from resbone.detection.detector import build_detector

    ours = build_detector(cfg)
    ours.load_state_dict(fcos_from_torchvision(reference.state_dict()), strict=True)
    return {"torchvision eager": reference.to(device).eval(), "resbone eager": ours.to(device).eval()}


class DenseNetwork(nn.Module):
    """A detector's backbone, FPN and head as one module, for resbone.analysis.count_macs."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, batch: torch.Tensor):
        return self.detector.forward_network(batch)


def flops(detector: nn.Module, batch: int, size: int) -> float:
    """FLOPs of the dense network on a batch (2 per multiply-add; post-processing and losses not counted)."""
    from resbone.analysis import count_macs

    return 2.0 * count_macs(DenseNetwork(detector), (size, size)) * batch


def make_inputs(batch: int, size: int, num_classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.4 + 8
        targets.append(dict(boxes=torch.cat([xy, xy + wh], dim=1).to(device),
                            labels=torch.randint(1, num_classes + 1, (4,), generator=g).to(device)))
    return images, targets


def onnx_contender(model: nn.Module, size: int, device: torch.device, folder: str) -> Callable | None:
    """resbone's detector exported to ONNX and run by onnxruntime (None: no onnxruntime provider here)."""
    import onnxruntime

    from resbone.deploy import OnnxDetector, export_onnx, fuse_conv_norm

    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        print(f"onnxruntime row skipped: {provider} is not available in this onnxruntime")
        return None
    path = export_onnx(fuse_conv_norm(model).cpu(), os.path.join(folder, "fcos.onnx"), input_size=(size, size))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return OnnxDetector(path, providers=[provider], session_options=options)


def inference_steps(models: dict[str, nn.Module], images, args, device, folder: str) -> dict[str, Callable]:
    from resbone.deploy import prepare_for_inference

    contenders = dict(models)
    contenders["resbone fast path"] = prepare_for_inference(models["resbone eager"], compile=not args.no_compile,
                                                            mode=args.mode)

    def step(model: nn.Module) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(), timing.autocast(device, args.amp):
                return model(images)
        return call

    steps = {name: step(model) for name, model in contenders.items()}
    onnx = onnx_contender(models["resbone eager"], args.size, device, folder)
    if onnx is not None:
        arrays = [image.cpu().numpy() for image in images]
        steps["onnxruntime"] = lambda: onnx(arrays)
    return steps


def train_steps(models: dict[str, nn.Module], images, targets, args, device) -> dict[str, Callable]:
    from resbone.deploy import compile_model

    contenders = dict(models)
    if args.compile:
        compiled = copy.deepcopy(models["resbone eager"]).to(memory_format=torch.channels_last)
        contenders["resbone compiled"] = compile_model(compiled, mode=args.mode, freezing=False)

    def step(name: str, model: nn.Module) -> Callable[[], object]:
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        # resbone labels count from 1; torchvision's are the logit channels themselves.
        shift = 1 if name.startswith("torchvision") else 0
        shifted = [dict(boxes=t["boxes"], labels=t["labels"] - shift) for t in targets]

        def call() -> object:
            optimizer.zero_grad(set_to_none=True)
            with timing.autocast(device, args.amp):
                losses = model(images, shifted)
            loss = sum(losses.values())
            loss.backward()
            optimizer.step()
            return loss
        return call

    return {name: step(name, model) for name, model in contenders.items()}


def detection_gap(expected: dict, got: dict, label_shift: int = 0) -> str:
    """How far two detectors' detections of one image are apart."""
    boxes, scores = (torch.as_tensor(got[k]).float().cpu() for k in ("boxes", "scores"))
    labels = torch.as_tensor(got["labels"]).cpu()
    if len(boxes) != len(expected["boxes"]):
        return f"different numbers of detections: {len(boxes)} vs {len(expected['boxes'])}"
    if len(boxes) == 0:
        return "no detections on either side"
    return (f"{len(boxes)} detections each; max |box diff| "
            f"{float((boxes - expected['boxes'].float().cpu()).abs().max()):.1e} px, max |score diff| "
            f"{float((scores - expected['scores'].float().cpu()).abs().max()):.1e}, labels equal: "
            f"{bool((labels == expected['labels'].cpu() + label_shift).all())}")


def gaps(steps: dict[str, Callable]) -> list[str]:
    """Each inference contender's detections of the first image against resbone eager's (and torchvision's
    against resbone's, labels shifted by one); these calls also build the compiled graphs."""
    outputs = {name: step()[0] for name, step in steps.items()}
    reference = outputs["resbone eager"]
    lines = [f"resbone eager vs torchvision eager: {detection_gap(outputs['torchvision eager'], reference, 1)}"]
    lines += [f"{name} vs resbone eager: {detection_gap(reference, out)}" for name, out in outputs.items()
              if name not in ("resbone eager", "torchvision eager")]
    return lines


def run(args, device: torch.device) -> tuple[list[timing.Section], list[str], dict[str, str]]:
    def measure(title: str, batch: int, steps: dict[str, Callable], flops_per_call: float) -> timing.Section:
        seconds = timing.time_interleaved(steps, warmup=args.warmup, repeats=args.repeats, device=device)
        return timing.Section(title, batch, seconds, flops_per_call)

    r50 = build_r50(args.size, device)
    images, targets = make_inputs(args.batch, args.size, NUM_CLASSES, device)
    where = f"batch {args.batch}x3x{args.size}x{args.size}"
    r50_flops = flops(r50["resbone eager"], args.batch, args.size)
    profiles = {}
    with tempfile.TemporaryDirectory() as folder:
        steps = inference_steps(r50, images, args, device, folder)
        gap_lines = gaps(steps)
        sections = [measure(f"FCOS R-50-FPN inference, {where}", args.batch, steps, r50_flops)]
        if args.profile:
            profiles["inference (resbone eager, R-50-FPN)"] = timing.top_ops(steps["resbone eager"], device)
    if args.int8:
        from bench import int8

        steps = int8.fcos_network_steps({k: m.cpu() for k, m in r50.items()}, [im.cpu() for im in images],
                                        args.calib_batches)
        sections.append(measure(f"FCOS R-50-FPN network (backbone, FPN, head) float32 and int8 (CPU), {where}",
                                args.batch, steps, r50_flops))
    steps = train_steps(r50, images, targets, args, device)
    sections.append(measure(f"FCOS R-50-FPN SGD train iteration, {where}", args.batch, steps, 3 * r50_flops))
    if args.profile:
        profiles["train iteration (resbone eager, R-50-FPN)"] = timing.top_ops(steps["resbone eager"], device)
    del r50, steps
    demo = build_demo(args.demo_size, device)
    images, targets = make_inputs(args.demo_batch, args.demo_size, demo["resbone eager"].num_classes, device)
    sections.append(measure(f"FCOS R-18-FPN (demo config) SGD train iteration, batch {args.demo_batch}x3x"
                            f"{args.demo_size}x{args.demo_size}", args.demo_batch,
                            train_steps(demo, images, targets, args, device),
                            3 * flops(demo["resbone eager"], args.demo_batch, args.demo_size)))
    return sections, gap_lines, profiles


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fcos", description=__doc__.splitlines()[0])
    timing.add_common_arguments(parser, batch=2, size=512, warmup=1, repeats=5)
    parser.add_argument("--demo-batch", type=int, default=8)
    parser.add_argument("--demo-size", type=int, default=96)
    parser.add_argument("--compile", action="store_true", help="add resbone's compiled model to the train rows")
    parser.add_argument("--int8", action="store_true", help="add the R-50-FPN network int8 section (CPU)")
    parser.add_argument("--calib-batches", type=int, default=4, help="int8 calibration batches (default 4)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.demo_batch, args.warmup, args.repeats, args.calib_batches = 1, 128, 2, 0, 1, 1
    args.compile = args.compile and not args.no_compile
    device = timing.setup(args)
    with timing.Machine() as machine:
        peak_flops, peak_line = timing.peak(args, device)
        sections, gap_lines, profiles = run(args, device)
    print(timing.header("FCOS", args, device))
    print(peak_line + " (GFLOP/s: backbone, FPN and head; a train iteration counted as 3 forward passes)")
    print(timing.section_table(sections, peak_flops=peak_flops))
    note = "" if args.amp == "off" else f" ({args.amp} autocast: rounding reorders them, expect differences)"
    print("\n".join([f"same weights, detections of the first image{note}:", *gap_lines]))
    for title, table in profiles.items():
        print(f"\ntop ops by self time, {title}:\n{table}")
    if args.int8:
        from resbone.deploy.quantize import cpu_int8_line
        print(cpu_int8_line())
    print(machine.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
