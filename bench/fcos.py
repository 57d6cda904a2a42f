"""FCOS R-50-FPN side by side: resbone vs torchvision, inference and one SGD train iteration.

    python -m bench.fcos                # batch 2 at 512 px, CPU (or --device cuda)
    python -m bench.fcos --quick        # a tiny run for smoke tests (numbers meaningless)

Both detectors are torchvision's fcos_resnet50_fpn as it is built for training from ImageNet weights
(FrozenBN, stem + layer1 frozen); resbone's is configured with TORCHVISION_FCOS_OVERRIDES and loaded with
torchvision's weights through resbone.convert, so both compute the same thing (the script prints how far
their detections are apart). The classification weights are scaled up so that post-processing has
boxes to threshold, sort and suppress (up to the 100-detection cap), as with a trained model.
Timing is bench.timing's: interleaved repeats, medians, and resbone's speed relative to torchvision
(> 1.00x = faster). Timings are never asserted.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence

import torch
from torch import nn

from bench.timing import load_line, ratio_table, time_phases

NUM_CLASSES = 91  # torchvision's COCO head: 91 logit channels


def build_models(size: int, device: torch.device) -> dict[str, nn.Module]:
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.fcos import FCOS as TorchvisionFCOS
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from resbone.convert.torchvision import fcos_from_torchvision
    from resbone.detection.defaults import TORCHVISION_FCOS_OVERRIDES, detector_cfg
    from resbone.detection.detector import build_detector

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
    ours = build_detector(detector_cfg(overrides))
    ours.load_state_dict(fcos_from_torchvision(reference.state_dict()), strict=True)
    return {"resbone": ours.to(device), "torchvision": reference.to(device)}


def _inputs(batch: int, size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.4 + 8
        targets.append(dict(boxes=torch.cat([xy, xy + wh], dim=1).to(device),
                            labels=torch.randint(1, NUM_CLASSES, (4,), generator=g).to(device)))
    return images, targets


def measure(models: dict[str, nn.Module], *, batch: int, size: int, warmup: int, repeats: int,
            device: torch.device) -> dict[str, dict[str, float]]:
    """Median seconds per model for 'inference' (eval, inference mode) and 'train iter'."""
    images, targets = _inputs(batch, size, device)
    optimizers = {n: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
                  for n, m in models.items()}

    def inference(name: str) -> Callable[[], object]:
        def step() -> object:
            with torch.inference_mode():
                return models[name](images)
        return step

    def train_iter(name: str) -> Callable[[], object]:
        def step() -> object:
            optimizers[name].zero_grad(set_to_none=True)
            # resbone labels count from 1; torchvision's are the logit channels themselves.
            shift = 0 if name == "resbone" else 1
            losses = models[name](images, [dict(boxes=t["boxes"], labels=t["labels"] - shift) for t in targets])
            loss = sum(losses.values())
            loss.backward()
            optimizers[name].step()
            return loss
        return step

    return time_phases(models, (("inference", inference, False), ("train iter", train_iter, True)),
                       warmup=warmup, repeats=repeats,
                       device=device)


def detection_gap(models: dict[str, nn.Module], size: int, device: torch.device) -> str:
    """How far the two detectors' outputs are apart on one image (before any training step)."""
    images, _ = _inputs(1, size, device)
    with torch.inference_mode():
        ours, ref = (models[n].eval()(images)[0] for n in ("resbone", "torchvision"))
    if len(ours["boxes"]) != len(ref["boxes"]):
        return f"different numbers of detections: {len(ours['boxes'])} vs {len(ref['boxes'])}"
    if len(ref["boxes"]) == 0:
        return "no detections on either side"
    return (f"{len(ref['boxes'])} detections each; max |box diff| "
            f"{float((ours['boxes'] - ref['boxes']).abs().max()):.1e} px, max |score diff| "
            f"{float((ours['scores'] - ref['scores']).abs().max()):.1e}, labels equal: "
            f"{bool((ours['labels'] == ref['labels'] + 1).all())}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fcos", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="batch 1 at 128 px, no warmup, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.warmup, args.repeats = 1, 128, 0, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    models = build_models(args.size, device)
    gap = detection_gap(models, args.size, device)
    results = measure(models, batch=args.batch, size=args.size, warmup=args.warmup, repeats=args.repeats,
                      device=device)
    load_after = os.getloadavg()
    print(f"FCOS R-50-FPN, {device}, batch {args.batch}x3x{args.size}x{args.size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.warmup} warmup + {args.repeats} interleaved repeats")
    print(ratio_table(results, ["inference", "train iter"], batch=args.batch))
    print(f"same weights, detections: {gap}")
    print(load_line(load_before, load_after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
