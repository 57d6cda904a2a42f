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

from resbone.detection.data import read_image
from resbone.engine import distributed as comm
from resbone.engine.checkpoint import load_checkpoint, load_weights
from resbone.engine.trainer import build_model, evaluate, select_device, setup_logging
from resbone.engine.visualize import draw_detections

__all__ = ["load_detector", "evaluate_weights", "predict_images"]

logger = logging.getLogger("resbone")


def load_detector(cfg, weights: str) -> tuple[nn.Module, list[str] | None]:
    """build_model(cfg) with `weights` loaded, in eval mode; also the class names the checkpoint
    recorded (None for a plain state_dict)."""
    if not os.path.isfile(weights):
        raise ValueError(f"weights file {weights} does not exist")
    model = build_model(cfg)
    load_weights(model, weights)
    class_names = None
    if not weights.endswith(".safetensors"):
        state = load_checkpoint(weights)
        if isinstance(state, dict) and isinstance(state.get("class_names"), list):
            class_names = [str(n) for n in state["class_names"]]
    model.eval()
    return model, class_names


def evaluate_weights(cfg, weights: str) -> dict[str, dict[str, float]]:
    """COCO AP of a checkpoint on every set of DATASETS.TEST (runs under torchrun too)."""
    comm.init_distributed(str(cfg.MODEL.DEVICE) if torch.cuda.is_available() else "cpu")
    setup_logging()
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the sets to evaluate, e.g. "
                         "DATASETS.TEST \"('shapes_val',)\"")
    device = select_device(cfg)
    model, _ = load_detector(cfg, weights)
    return evaluate(cfg, model.to(device), device)


@torch.no_grad()
def predict_images(cfg, weights: str, images: Sequence[str], out_dir: str, *,
                   score_threshold: float = 0.3) -> list[str]:
    """Run the detector on image files and write `out_dir/<name>.png` with boxes, class names and
    scores; returns the written paths."""
    setup_logging()
    if not images:
        raise ValueError("give at least one image file to predict on")
    device = select_device(cfg)
    model, class_names = load_detector(cfg, weights)
    model.to(device)
    written = []
    for path in images:
        image = read_image(path)
        prediction = model([image.to(device)])[0]
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        written.append(draw_detections(image, prediction, os.path.join(out_dir, name),
                                       class_names=class_names, score_threshold=score_threshold))
        kept = int((prediction["scores"] >= score_threshold).sum())
        logger.info("%s: %d detections with score >= %.2f -> %s", path, kept, score_threshold, written[-1])
    return written
