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

from resbone import convert as resbone_convert
from resbone.detection.data import read_image
from resbone.detection.detector import build_detector
from resbone.engine.checkpoint import load_training_state
from resbone.engine.evaluation import evaluate
from resbone.engine.runtime import start_process
from resbone.engine.visualize import draw_detections

__all__ = ["load_detector", "evaluate_weights", "predict_images"]

logger = logging.getLogger("resbone")


def load_detector(cfg, weights: str) -> tuple[nn.Module, list[str] | None]:
    """build_detector(cfg) with `weights` loaded, in eval mode; also the class names the checkpoint
    recorded (None for a plain state_dict)."""
    if os.path.isdir(weights):
        raise ValueError(f"weights {weights} is a directory; pass a checkpoint file in it, e.g. "
                         f"{os.path.join(weights, 'model_final.pth')}")
    if not os.path.isfile(weights):
        raise ValueError(f"weights file {weights} does not exist")
    # MODEL.WEIGHT is not read: `weights` replaces it, as FCOS's test_net.py --ckpt does (FCOS's configs
    # name catalog:// backbones there, which resbone refuses to download)
    model = build_detector(cfg)
    # unlike MODEL.WEIGHT (often a backbone only), these weights must be the detector the config builds:
    # a tensor of another shape (NUM_CLASSES, widths) would otherwise stay random and make the numbers junk
    report = resbone_convert.load_checkpoint(model, weights, strict=False)
    if report.mismatched or not report.loaded:
        raise ValueError(f"weights {weights} do not fit the detector this config builds ({report.problems()}); "
                         "use the config and overrides the weights were trained with")
    if not report.ok:
        logger.warning("%s: loaded %d tensors; %s", weights, len(report.loaded), report.problems())
    class_names = None
    state = None
    if not weights.endswith((".safetensors", ".pkl")):  # only resbone's training checkpoints record them
        try:
            state = load_training_state(weights)
        except ValueError:  # a pickle torch.load will not read safely: resbone.convert read its tensors
            pass
    if isinstance(state, dict) and isinstance(state.get("class_names"), list):
        class_names = [str(n) for n in state["class_names"]]
    model.eval()
    return model, class_names


def evaluate_weights(cfg, weights: str, *, threads: int | None = None) -> dict[str, dict[str, float]]:
    """COCO AP of a checkpoint on every set of DATASETS.TEST (runs under torchrun too)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the sets to evaluate, e.g. "
                         "DATASETS.TEST \"('shapes_val',)\"")
    device = start_process(cfg, threads=threads)
    model, _ = load_detector(cfg, weights)
    return evaluate(cfg, model.to(device), device)


@torch.no_grad()
def predict_images(cfg, weights: str, images: Sequence[str], out_dir: str, *,
                   score_threshold: float = 0.3, threads: int | None = None) -> list[str]:
    """Run the detector on image files and write `out_dir/<name>.png` with boxes, class names and
    scores; returns the written paths."""
    if not images:
        raise ValueError("give at least one image file to predict on")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1] (scores are probabilities), got {score_threshold}")
    outputs = _output_paths(images, out_dir)
    device = start_process(cfg, threads=threads)
    model, class_names = load_detector(cfg, weights)
    model.to(device)
    written = []
    for path in dict.fromkeys(images):
        image = read_image(path)
        prediction = model([image.to(device)])[0]
        written.append(draw_detections(image, prediction, outputs[path],
                                       class_names=class_names, score_threshold=score_threshold))
        kept = int((prediction["scores"] >= score_threshold).sum())
        logger.info("%s: %d detections with score >= %.2f -> %s", path, kept, score_threshold, written[-1])
    return written


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
