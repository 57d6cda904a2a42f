"""Use a trained classifier: evaluate a checkpoint (Acc@1 / Acc@5, per class, confusion PNG), or list the
top-k classes of images (files or folders) and draw them in a grid.

The library calls behind `resbone eval` / `resbone predict` for a classification config; the weights are a
`resbone train` checkpoint (its class names are read from it) or any dialect resbone.convert reads.
Proven by tests/classification/test_task.py and tests/cli/test_engine_cli.py.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
from PIL import Image, ImageDraw
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from resbone.classification.data.folders import LabelledImages, open_labelled_images
from resbone.classification.task import build_classifier, evaluate_sets, model_pretrained_cfg
from resbone.classification.transforms import build_eval_transform
from resbone.engine.accelerate import accelerate_as_configured
from resbone.engine.checkpoint import check_weights_file, load_trained_weights, recorded_class_names
from resbone.engine.runtime import start_process
from resbone.engine.visualize import font, save_png, side_by_side
from resbone.utils.checks import is_int

__all__ = ["EvalResults", "Predictions", "load_classifier", "evaluate_weights", "predict_images",
           "draw_validation_grid"]

logger = logging.getLogger("resbone")


class EvalResults(dict):
    """{data set: metrics}; `partial_weights` names the tensors left at their initial values (or None)."""

    partial_weights: str | None = None


class Predictions(dict):
    """{image path: [(class name, probability), ...] best first}; `grid` the drawn PNG, `partial_weights`."""

    grid: str | None = None
    partial_weights: str | None = None


def load_classifier(cfg, weights: str, *, allow_missing: bool = False) -> tuple[nn.Module, list[str], str | None]:
    """The classifier of `cfg` with `weights`, in eval mode; its class names (the checkpoint's, else those of
    DATASETS.TRAIN); the problems of partial weights (refused unless `allow_missing`)."""
    check_weights_file(weights)
    class_names = recorded_class_names(weights)
    if class_names is None:
        class_names = open_labelled_images(cfg.DATASETS.TRAIN, what="DATASETS.TRAIN (for the class names)").classes
    model = build_classifier(_without_weight(cfg), len(class_names))
    partial = load_trained_weights(model, weights, allow_missing=allow_missing,
                                   what=f"the {cfg.MODEL.NAME} with {len(class_names)} classes this config builds")
    return model.eval(), class_names, partial


def _without_weight(cfg):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHT = ""  # `weights` replace MODEL.WEIGHT, as the detector's --weights do
    cfg.MODEL.PRETRAINED = False
    return cfg


def evaluate_weights(cfg, weights: str, *, allow_missing: bool = False, threads: int | None = None,
                     out_dir: str | None = None, int8: bool = False) -> EvalResults:
    """Acc@1 / Acc@5, per-class accuracy and the confusion matrix of a checkpoint on every DATASETS.TEST set
    (confusion PNGs into `out_dir` when given). int8: the classifier quantized first (quantize_for_eval)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the image folders to evaluate, e.g. "
                         "DATASETS.TEST \"('datasets/textures/val',)\"")
    device = start_process(cfg, threads=threads)
    model, class_names, partial = load_classifier(cfg, weights, allow_missing=allow_missing)
    if int8:
        model, device = quantize_for_eval(cfg, model), torch.device("cpu")
    else:
        model = accelerate_as_configured(model.to(device), cfg, method="forward")
    results = EvalResults(evaluate_sets(cfg, model, device, class_names, out_dir=out_dir))
    results.partial_weights = partial
    return results


def quantize_for_eval(cfg, model: nn.Module, *, batches: int = 8) -> nn.Module:
    """The classifier as int8 (resbone.deploy.quantize, CPU), calibrated on `batches` batches of TEST.IMS_PER_BATCH
    images drawn at random (seed 0) from DATASETS.TRAIN through the eval transform: training images, not the
    evaluated ones, of every class (the folder lists them class by class)."""
    from resbone.deploy import quantize

    dataset = open_labelled_images(cfg.DATASETS.TRAIN, what="DATASETS.TRAIN (int8 calibration)",
                                   transform=build_eval_transform(cfg, model_pretrained_cfg(cfg.MODEL.NAME)))
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:batches * cfg.TEST.IMS_PER_BATCH]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, chosen.tolist()),
                                         batch_size=cfg.TEST.IMS_PER_BATCH)
    int8 = quantize(model.cpu().eval(), loader)
    logger.info("int8 (%s engine): calibrated on %d images of %s", int8.backend, len(chosen), cfg.DATASETS.TRAIN)
    return int8


def _image_files(paths: Sequence[str]) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                           if name.lower().endswith(IMG_EXTENSIONS))
            if not found:
                raise ValueError(f"folder {path} holds no image ({', '.join(IMG_EXTENSIONS)})")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"image {path} does not exist")
    if not files:
        raise ValueError("give at least one image file or folder to predict on")
    return files


@torch.no_grad()
def _top_classes(model: nn.Module, images: list, transform, class_names: list[str], topk: int, device
                 ) -> list[list[tuple[str, float]]]:
    batch = torch.stack([transform(image) for image in images]).to(device)
    probabilities = model(batch).float().softmax(dim=1).cpu()
    values, indices = probabilities.topk(min(topk, len(class_names)), dim=1)
    return [[(class_names[i], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(values, indices)]


def _panel(image: Image.Image, lines: list[str], *, side: int = 160, truth: str | None = None) -> Image.Image:
    picture = image.convert("RGB").resize((side, side), Image.NEAREST if min(image.size) < side else Image.BILINEAR)
    text_font = font(12)
    rows = ([f"true: {truth}"] if truth else []) + lines
    out = Image.new("RGB", (side, side + 15 * len(rows) + 6), (255, 255, 255))
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    colours = [(0, 0, 0)] * len(rows)
    if truth:  # the best guess green when right, red when wrong
        colours[1] = (0, 130, 0) if lines[0].split(" ")[0] == truth else (200, 0, 0)
    for row, (line, colour) in enumerate(zip(rows, colours)):
        draw.text((3, side + 3 + 15 * row), line, fill=colour, font=text_font)
    return out


def predict_images(cfg, weights: str, images: Sequence[str], out_dir: str, *, topk: int = 5, columns: int = 4,
                   allow_missing: bool = False, threads: int | None = None) -> Predictions:
    """The `topk` classes of each image (files, or folders searched recursively) and their drawing in one
    `out_dir`/predictions.png grid."""
    if not is_int(topk) or topk < 1:
        raise ValueError(f"topk must be a positive integer, got {topk!r}")
    files = _image_files(images)
    device = start_process(cfg, threads=threads)
    model, class_names, partial = load_classifier(cfg, weights, allow_missing=allow_missing)
    model.to(device)
    transform = build_eval_transform(cfg, model_pretrained_cfg(cfg.MODEL.NAME))
    result, panels = Predictions(), []
    for start in range(0, len(files), 32):
        chunk = files[start:start + 32]
        pictures = [LabelledImages([(f, 0)], ["?"], source=f).load(0) for f in chunk]
        for path, picture, top in zip(chunk, pictures, _top_classes(model, pictures, transform, class_names, topk,
                                                                     device)):
            result[path] = top
            panels.append(_panel(picture, [f"{name} {p:.2f}" for name, p in top]))
    result.grid = save_png(side_by_side(panels, columns=columns), os.path.join(out_dir, "predictions.png"))
    result.partial_weights = partial
    return result


def draw_validation_grid(cfg, weights: str, out_dir: str, *, num_images: int = 16, columns: int = 4, topk: int = 3,
                         allow_missing: bool = False, threads: int | None = None) -> str:
    """The first `num_images` of DATASETS.TEST[0] spread over its classes, each with its true class and the
    top-k predicted (green: right, red: wrong), in `out_dir`/grid_<set>.png; returns the path."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the image folder to draw")
    if num_images < 1 or columns < 1:
        raise ValueError(f"the grid needs num_images >= 1 and columns >= 1, got {num_images} and {columns}")
    device = start_process(cfg, threads=threads)
    model, class_names, _ = load_classifier(cfg, weights, allow_missing=allow_missing)
    model.to(device)
    dataset = open_labelled_images(cfg.DATASETS.TEST[0], what="DATASETS.TEST")
    # round-robin over the classes: every class shows up in a small grid
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(dataset.targets):
        by_class.setdefault(label, []).append(index)
    order = [i for group in zip(*by_class.values()) for i in group][:num_images]
    transform = build_eval_transform(cfg, model_pretrained_cfg(cfg.MODEL.NAME))
    pictures = [dataset.load(i) for i in order]
    tops = _top_classes(model, pictures, transform, class_names, topk, device)
    panels = [_panel(p, [f"{n} {s:.2f}" for n, s in top], truth=dataset.classes[dataset.targets[i]])
              for p, top, i in zip(pictures, tops, order)]
    name = os.path.basename(os.path.normpath(cfg.DATASETS.TEST[0]))
    path = save_png(side_by_side(panels, columns=columns, gap=8), os.path.join(out_dir, f"grid_{name}.png"))
    logger.info("%s: %d images of %s, true class and top-%d -> %s", weights, len(panels), name, topk, path)
    return path

