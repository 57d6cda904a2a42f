"""`resbone quantize`: an int8 copy of a model or of an FCOS detector's network, calibrated on a folder of
images, written as TorchScript (resbone.deploy.quantize; loaded back with `load_quantized`).

    resbone quantize resnet50 --checkpoint w.pth --calib images/ --out resnet50_int8.pt
    resbone quantize my_fcos.yaml --checkpoint model_final.pth --calib val/ --out fcos_int8.pt
"""
from __future__ import annotations

import argparse
import os

__all__ = ["QUANTIZE_COMMANDS"]

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
    """timm's eval transform (resize to size / crop_pct, center crop, normalize with the model's mean/std)."""
    import torch
    from torchvision.transforms import v2

    from resbone.detection.data.dataset import read_image
    from resbone.models.base import IMAGENET_MEAN, IMAGENET_STD

    cfg = getattr(model, "pretrained_cfg", {})
    crop_pct = cfg.get("crop_pct", 0.875)
    transform = v2.Compose([v2.Resize([int(s / crop_pct) for s in size], antialias=True), v2.CenterCrop(size),
                            v2.Normalize(cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))])
    images = [transform(read_image(p)) for p in paths]
    return [torch.stack(images[i:i + batch]) for i in range(0, len(images), batch)]


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
    from resbone.detection.data.dataset import read_image

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    paths = calibration_images(args.calib, args.calib_images)
    model, detector = _build(args)
    model = model.cpu().eval()
    if detector:
        images = [read_image(p) for p in paths]
        batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
        example = model.transform(batches[0])[0]
    else:
        batches = _classifier_batches(model, paths, tuple(args.input_size), args.batch)
        example = batches[0]
    int8 = quantize(model, batches, backend=args.backend)
    path = save_quantized(int8, args.out, example, meta={"model": args.name, "calibration_images": len(paths)})
    network = int8.int8_network if detector else int8
    print(f"wrote {path}: {args.name} int8 ({network.backend}), calibrated on {len(paths)} images of {args.calib}")
    if not detector and getattr(model, "num_classes", None):
        with torch.no_grad():
            same = sum(int((model(b).argmax(-1) == int8(b).argmax(-1)).sum()) for b in batches)
        print(f"top-1 agreement with float32 on the calibration images: {same}/{len(paths)}")
    if network.float_parts:
        print(f"kept float (no int8 kernel): {float_parts_summary(network.float_parts)}")
    print(cpu_int8_line())
    return 0


QUANTIZE_COMMANDS = (_add_quantize,)
