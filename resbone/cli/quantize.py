"""`resbone quantize`: an int8 copy of a model or of an FCOS detector's network, calibrated on a folder of
images, written as TorchScript (resbone.deploy.quantize; loaded back with `load_quantized`).

    resbone quantize resnet50 --checkpoint w.pth --calib images/ --out resnet50_int8.pt
    resbone quantize my_fcos.yaml --checkpoint model_final.pth --calib val/ --out fcos_int8.pt
    resbone quantize resnet18 --checkpoint w.pth --set num_classes=6 --calib train/ --qat-steps 60 --out q.pt

--qat-steps N: quantization-aware training (resbone.deploy.quantize_qat) on --calib as a labelled image folder
(one sub-folder per class, torchvision's ImageFolder), N SGD steps of --batch images, instead of calibration.
"""
from __future__ import annotations

import argparse
import os

__all__ = ["QUANTIZE_COMMANDS", "calibration_images", "labelled_loader"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    from resbone.deploy.quantize import BACKENDS

    p = sub.add_parser("quantize", help="int8 copy of a model or a detector's network (CPU), calibrated on images")
    p.add_argument("name", help="a registered model name (see `resbone list`), or a detector's YAML config")
    p.add_argument("--checkpoint", default=None, help="float weights: any dialect resbone.convert reads, or a "
                   "`resbone train` checkpoint for a config")
    p.add_argument("--calib", required=True, metavar="DIR", help="a folder of representative images (png/jpg)")
    p.add_argument("--out", required=True, help="the TorchScript file to write (atomically)")
    p.add_argument("--calib-images", type=int, default=64, metavar="N", help="images observed (default 64)")
    p.add_argument("--batch", type=int, default=8, help="calibration batch size (default 8)")
    p.add_argument("--input-size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"),
                   help="a classifier's input (resize + center crop as timm's eval transform); a detector "
                        "resizes as its config says")
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="x86", help="quantized engine (default x86)")
    p.add_argument("--qat-steps", type=int, default=0, metavar="N", help="a classifier: N steps of quantization-"
                   "aware training on --calib as a folder of class sub-folders (default 0: post-training only)")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="QAT's SGD learning rate (default 1e-4, torchvision's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model argument (YAML value), or a detector's config key")
    p.set_defaults(func=_run_quantize)


def calibration_images(folder: str, limit: int) -> list[str]:
    """The first `limit` image files of `folder` (sorted), or a clear error."""
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"--calib {folder!r} is not a folder of images")
    if limit < 1:
        raise ValueError(f"--calib-images must be >= 1, got {limit}")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"--calib {folder!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return [os.path.join(folder, f) for f in files[:limit]]


def _classifier_batches(model, paths: list[str], size: tuple[int, int], batch: int) -> list:
    """The images of `paths` through `_classifier_transform`, in batches."""
    import torch

    from resbone.detection.data.dataset import read_image

    transform = _classifier_transform(model, size)
    images = [transform(read_image(p)) for p in paths]
    return [torch.stack(images[i:i + batch]) for i in range(0, len(images), batch)]


def _classifier_transform(model, size: tuple[int, int]):
    """timm's eval transform (resize to size / crop_pct, center crop, normalize with the model's mean/std)."""
    from torchvision.transforms import v2

    from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD

    cfg = getattr(model, "pretrained_cfg", {})
    crop_pct = cfg.get("crop_pct", 0.875)
    return v2.Compose([v2.Resize([int(s / crop_pct) for s in size], antialias=True), v2.CenterCrop(size),
                       v2.Normalize(cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))])


def labelled_loader(model, folder: str, size: tuple[int, int], batch: int):
    """A shuffled (seed 0) DataLoader of the labelled image folder `folder` (torchvision's ImageFolder: one
    sub-folder per class) through `_classifier_transform`; a clear error where its classes do not fit the model."""
    import torch
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if not os.path.isdir(folder):
        raise NotADirectoryError(f"--calib {folder!r} is not a folder of class sub-folders")
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), _classifier_transform(model, size)])
    dataset = ImageFolder(folder, transform=transform)
    if getattr(model, "num_classes", len(dataset.classes)) != len(dataset.classes):
        raise ValueError(f"--calib {folder!r} holds {len(dataset.classes)} classes, the model {model.num_classes}: "
                         "give --set num_classes=N and the weights of a classifier of those classes")
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def _qat(model, args: argparse.Namespace):
    """(int8 model, example batch, images used) by quantization-aware training on the labelled folder --calib."""
    from resbone.deploy import quantize_qat

    loader = labelled_loader(model, args.calib, tuple(args.input_size), args.batch)
    int8 = quantize_qat(model, loader, steps=args.qat_steps, backend=args.backend, lr=args.qat_lr)
    print(f"quantization-aware training: {args.qat_steps} steps of {args.batch} images, loss "
          f"{int8.qat_losses[0]:.3f} -> {int8.qat_losses[-1]:.3f}")
    return int8, next(iter(loader))[0], len(loader.dataset)


def _build(args: argparse.Namespace):
    """(float model, is a detector) from a model name or a detector config."""
    if args.name.endswith((".yaml", ".yml")):
        from resbone.detection.config import load_cfg
        from resbone.detection.detector import build_detector
        from resbone.detection.predictor import load_detector

        cfg = load_cfg(args.name, [part for item in args.set for part in item.split("=", 1)] + ["MODEL.DEVICE", "cpu"])
        return (load_detector(cfg, args.checkpoint)[0] if args.checkpoint else build_detector(cfg)), True
    from resbone.factory import create_model

    return create_model(args.name, checkpoint=args.checkpoint, **_model_arguments(args.set)), False


def _model_arguments(items: list[str]) -> dict:
    """--set KEY=VALUE model arguments, values read as YAML, `None` as YAML's null (`resbone export`'s convention)."""
    import yaml

    pairs = [item.partition("=") for item in items]
    bad = [item for item, (key, sep, _) in zip(items, pairs) if not sep or not key.strip().isidentifier()]
    if bad:
        raise ValueError(f"--set expects KEY=VALUE with KEY a model argument name, got {bad[0]!r}")
    return {key.strip(): None if value.strip() == "None" else yaml.safe_load(value) for key, _, value in pairs}


def _run_quantize(args: argparse.Namespace) -> int:
    import torch

    from resbone.deploy.quantize import cpu_int8_line, float_parts_summary, quantize, save_quantized

    if args.batch < 1 or args.qat_steps < 0:
        raise ValueError(f"--batch must be >= 1 and --qat-steps >= 0, got {args.batch} and {args.qat_steps}")
    model, detector = _build(args)
    model = model.cpu().eval()
    if args.qat_steps and detector:
        raise ValueError("--qat-steps fine-tunes a classifier; a detector is quantized after training (no --qat-steps)")
    if args.qat_steps:
        int8, example, count = _qat(model, args)
        batches = [example]
    else:
        batches, example, count = _calibration(model, detector, args)
        int8 = quantize(model, batches, backend=args.backend)
    path = save_quantized(int8, args.out, example, meta={"model": args.name, "calibration_images": count,
                                                         "qat_steps": args.qat_steps})
    network = int8.int8_network if detector else int8
    print(f"wrote {path}: {args.name} int8 ({network.backend}), {'fine-tuned' if args.qat_steps else 'calibrated'} "
          f"on {count} images of {args.calib}")
    if not detector and getattr(model, "num_classes", None):
        with torch.no_grad():
            same = sum(int((model(b).argmax(-1) == int8(b).argmax(-1)).sum()) for b in batches)
        print(f"top-1 agreement with float32 on the {'first batch' if args.qat_steps else 'calibration images'}: "
              f"{same}/{sum(len(b) for b in batches)}")
    if network.float_parts:
        print(f"kept float (no int8 kernel): {float_parts_summary(network.float_parts)}")
    print(cpu_int8_line())
    return 0


def _calibration(model, detector: bool, args: argparse.Namespace) -> tuple[list, object, int]:
    """(calibration batches, an example batch, images used) from the images of --calib."""
    from resbone.detection.data.dataset import read_image

    paths = calibration_images(args.calib, args.calib_images)
    if detector:
        images = [read_image(p) for p in paths]
        batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
        return batches, model.transform(batches[0])[0], len(paths)
    batches = _classifier_batches(model, paths, tuple(args.input_size), args.batch)
    return batches, batches[0], len(paths)


QUANTIZE_COMMANDS = (_add_quantize,)
