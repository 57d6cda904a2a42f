"""Use a trained detector: evaluate a checkpoint, or draw its boxes on image files.

The library calls behind `resbone eval` and `resbone predict`; the weights file is a resbone training
checkpoint (or any state_dict with the detector's names), read with torch.load(weights_only=True).
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
from torch import nn

from resbone.detection.data import COCODetection, read_image, resolve_dataset
from resbone.detection.data.build import build_dataset, shapes_settings
from resbone.detection.detector import build_detector
from resbone.detection.inference import evaluate
from resbone.detection.visualize import draw_detections, render_detections
from resbone.engine.accelerate import accelerate_as_configured
from resbone.engine.checkpoint import check_weights_file, load_trained_weights, recorded_class_names
from resbone.engine.runtime import start_process
from resbone.engine.visualize import save_png, side_by_side

__all__ = ["EvalResults", "Drawings", "load_detector", "evaluate_weights", "predict_images", "draw_validation_grid",
           "find_ground_truth"]

logger = logging.getLogger("resbone")


class EvalResults(dict):
    """{data set: {AP, AP50, ...}}; `partial_weights` says which tensors kept their initial values when
    allow_missing=True let incomplete weights through (None: the weights filled the whole detector)."""

    partial_weights: str | None = None


class Drawings(list):
    """The written PNG paths; `partial_weights` as in EvalResults."""

    partial_weights: str | None = None


def load_detector(cfg, weights: str, *, allow_missing: bool = False) -> tuple[nn.Module, list[str] | None]:
    """build_detector(cfg) with `weights` loaded, in eval mode; also the class names the checkpoint
    recorded (None for a plain state_dict). Weights that leave a tensor of the detector missing, or hold
    tensors it does not have, are refused unless `allow_missing` (then a warning names them)."""
    model, class_names, _ = _load_detector(cfg, weights, allow_missing=allow_missing)
    return model, class_names


def _load_detector(cfg, weights: str, *, allow_missing: bool) -> tuple[nn.Module, list[str] | None, str | None]:
    check_weights_file(weights)
    # MODEL.WEIGHT is not read: `weights` replaces it, as FCOS's test_net.py --ckpt does (FCOS's configs
    # name ImageNet backbones there, which the detector's checkpoint already holds)
    model = build_detector(cfg)
    partial = load_trained_weights(model, weights, what="the detector this config builds", allow_missing=allow_missing)
    model.eval()
    return model, recorded_class_names(weights), partial


def evaluate_weights(cfg, weights: str, *, allow_missing: bool = False, threads: int | None = None,
                     int8: bool = False) -> EvalResults:
    """COCO AP of a checkpoint on every set of DATASETS.TEST (runs under torchrun too); MODEL.COMPILE and
    MODEL.CHANNELS_LAST apply as in training. int8: the network quantized first (quantize_for_eval)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the sets to evaluate, e.g. "
                         "DATASETS.TEST \"('shapes_val',)\"")
    device = start_process(cfg, threads=threads)
    model, _, partial = _load_detector(cfg, weights, allow_missing=allow_missing)
    if int8:
        model, device = quantize_for_eval(cfg, model), torch.device("cpu")
    else:
        model = accelerate_as_configured(model.to(device), cfg)
    results = EvalResults(evaluate(cfg, model, device))
    results.partial_weights = partial
    return results


def quantize_for_eval(cfg, model: nn.Module, *, batches: int = 8) -> nn.Module:
    """The detector with an int8 network (resbone.deploy.quantize; resizing and NMS stay float), calibrated
    on the first `batches` test-time batches of DATASETS.TRAIN[0]: training images, not the evaluated ones."""
    from resbone.deploy import quantize
    from resbone.detection.data import collate
    from resbone.engine.data import build_test_loader

    if not cfg.DATASETS.TRAIN:
        raise ValueError("int8 evaluation calibrates on DATASETS.TRAIN[0], which is empty; name a training set")
    dataset = build_dataset(cfg, cfg.DATASETS.TRAIN[0], is_train=False)
    loader = build_test_loader(dataset, batch_size=cfg.TEST.IMS_PER_BATCH, collate_fn=collate)
    return quantize(model.cpu().eval(), loader, max_batches=batches)


@torch.no_grad()
def predict_images(cfg, weights: str, images: Sequence[str], out_dir: str, *, score_threshold: float = 0.3,
                   show_gt: bool = False, gt_file: str | None = None, allow_missing: bool = False,
                   threads: int | None = None) -> Drawings:
    """Run the detector on image files and write `out_dir/<name>.png` with boxes, class names and
    scores; returns the written paths. `show_gt` (or a COCO json `gt_file`): the ground truth beside the
    prediction, found in `gt_file` or in the config's data sets (DATASETS.TEST, then TRAIN) by file path."""
    if not images:
        raise ValueError("give at least one image file to predict on")
    _check_threshold(score_threshold)
    outputs = _output_paths(images, out_dir)
    truths = find_ground_truth(cfg, images, gt_file=gt_file) if show_gt or gt_file else {}
    device = start_process(cfg, threads=threads)
    model, class_names, partial = _load_detector(cfg, weights, allow_missing=allow_missing)
    model.to(device)
    written = Drawings()
    written.partial_weights = partial
    for path in dict.fromkeys(images):
        image = read_image(path)
        prediction = {k: v.cpu() for k, v in model([image.to(device)])[0].items()}
        written.append(draw_detections(image, prediction, outputs[path], class_names=class_names,
                                       score_threshold=score_threshold, ground_truth=truths.get(path)))
        kept = int((prediction["scores"] >= score_threshold).sum())
        logger.info("%s: %d detections with score >= %.2f -> %s", path, kept, score_threshold, written[-1])
    return written


def _check_threshold(score_threshold: float) -> None:
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1] (scores are probabilities), got {score_threshold}")


@torch.no_grad()
def draw_validation_grid(cfg, weights: str, out_dir: str, *, num_images: int = 8, columns: int = 2,
                         score_threshold: float = 0.3, allow_missing: bool = False, threads: int | None = None) -> str:
    """The first `num_images` images of DATASETS.TEST[0], each as ground truth | prediction, `columns` pairs
    per row, written to `out_dir/grid_<data set>.png`; returns the path."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the set to draw, e.g. DATASETS.TEST \"('shapes_val',)\"")
    if num_images < 1 or columns < 1:
        raise ValueError(f"the grid needs num_images >= 1 and columns >= 1, got {num_images} and {columns}")
    _check_threshold(score_threshold)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the drawings")
    device = start_process(cfg, threads=threads)
    model, class_names, _ = _load_detector(cfg, weights, allow_missing=allow_missing)
    model.to(device)
    name = cfg.DATASETS.TEST[0]
    dataset = build_dataset(cfg, name, is_train=False)
    pairs = []
    for index in range(min(num_images, len(dataset))):
        image, target = dataset[index]
        prediction = {k: v.cpu() for k, v in model([image.to(device)])[0].items()}
        pairs.append(render_detections(image, prediction, class_names=class_names or dataset.class_names,
                                       score_threshold=score_threshold, ground_truth=target, min_side=192))
    path = save_png(side_by_side(pairs, columns=columns, gap=16), os.path.join(out_dir, f"grid_{name}.png"))
    logger.info("%s: %d images of %s, ground truth | prediction -> %s", weights, len(pairs), name, path)
    return path


def find_ground_truth(cfg, images: Sequence[str], *, gt_file: str | None = None) -> dict[str, dict]:
    """{image path: target (boxes, labels)} from the COCO json `gt_file` (matched by file name), else from
    the config's data sets (DATASETS.TEST, then TRAIN) whose image folder holds the image; an image found
    in none is a ValueError naming where it was looked for."""
    sources = ([(None, gt_file)] if gt_file else
               [_dataset_source(cfg, n) for n in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN)])
    sources = [s for s in sources if s is not None]
    truths, opened = {}, {}
    for path in dict.fromkeys(images):
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        for image_dir, ann_file in sources:
            if image_dir is not None and os.path.realpath(image_dir) != folder:
                continue
            if (ann_file, folder) not in opened:
                opened[ann_file, folder] = _annotations(ann_file, folder)
            dataset, index_of = opened[ann_file, folder]
            if os.path.basename(path) in index_of:
                truths[path] = dataset[index_of[os.path.basename(path)]][1]
                break
        else:
            where = gt_file or f"the data sets of the config ({', '.join((*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN))})"
            raise ValueError(f"--gt: {path} is not among the images of {where}; pass its COCO json with --gt-file")
    return truths


def _dataset_source(cfg, name: str) -> tuple[str, str] | None:
    try:
        return resolve_dataset(name, root=cfg.DATASETS.ROOT, shapes=shapes_settings(cfg))
    except (KeyError, ValueError):  # a set that is not there cannot hold the image
        return None


def _annotations(ann_file: str, image_dir: str) -> tuple[COCODetection, dict[str, int]]:
    dataset = COCODetection(ann_file, image_dir)
    names = [os.path.basename(dataset.coco.imgs[i]["file_name"]) for i in dataset.ids]
    return dataset, {name: index for index, name in enumerate(names)}


def _output_paths(images: Sequence[str], out_dir: str) -> dict[str, str]:
    """{image: out_dir/<stem>.png}; refused before anything is written when a drawing would replace one
    of the input images (`--out` = the images' folder) or two inputs would share a drawing."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the drawings")
    outputs, owner = {}, {}
    inputs = {os.path.realpath(p) for p in images}
    for path in dict.fromkeys(images):
        out = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        real = os.path.realpath(out)
        if real in inputs:
            raise ValueError(f"the drawing of {path} would overwrite the input image {out}; choose another "
                             "--out folder")
        if real in owner:
            raise ValueError(f"{owner[real]} and {path} would both be drawn to {out}; predict them into "
                             "separate --out folders")
        outputs[path], owner[real] = out, path
    return outputs
