"""Atomic training checkpoints, resuming, and loading MODEL.WEIGHT / --weights files safely.

Anchor: FCOS/maskrcnn-benchmark `utils/checkpoint.py` (`model_NNNNNNN.pth`, `model_final.pth` and a
`last_checkpoint` file naming the newest) with two changes: every file is written through
resbone.utils.files.atomic_write (an interrupted save never leaves a truncated checkpoint or a temporary
file), and files are read with torch.load(weights_only=True) (no code runs from a checkpoint). Weights
for a model (MODEL.WEIGHT, --weights) go through resbone.convert, which reads every dialect. Proven by
tests/engine/test_trainer.py (resume) and tests/cli/test_engine_cli.py (eval / predict from weights).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from resbone import convert as resbone_convert
from resbone.utils.files import atomic_write

__all__ = ["save_checkpoint", "last_checkpoint", "load_training_state", "load_weights", "recorded_class_names",
           "check_weights_file", "load_trained_weights"]

logger = logging.getLogger("resbone")


def save_checkpoint(output_dir: str, name: str, state: dict[str, Any]) -> str:
    """Write OUTPUT_DIR/name atomically and record it in OUTPUT_DIR/last_checkpoint; returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    with atomic_write(path) as handle:
        torch.save(state, handle)
    with atomic_write(os.path.join(output_dir, "last_checkpoint"), "w") as handle:
        handle.write(name)
    return path


def last_checkpoint(output_dir: str) -> str | None:
    record = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(record):
        return None
    with open(record) as handle:
        name = handle.read().strip()
    path = name if os.path.isabs(name) else os.path.join(output_dir, name)
    return path if os.path.isfile(path) else None


def load_training_state(path: str) -> dict[str, Any]:
    """A training checkpoint written by save_checkpoint (model, optimizer, scheduler, iteration, ...)."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code, a truncated file, not a checkpoint at all
        raise ValueError(f"checkpoint {path} cannot be read safely (torch.load weights_only=True): "
                         f"{error}") from None


def load_weights(model: nn.Module, path: str) -> None:
    """Load MODEL.WEIGHT / --weights into `model` through resbone.convert: any dialect (a resbone
    training checkpoint, torchvision/timm/mmdet/detectron2/FCOS files, caffe2 pickles), a whole detector
    or a backbone-only file (FCOS's MODEL.WEIGHT is usually an ImageNet backbone). Tensors that do not
    fit (another number of classes) are reported and left as initialised; nothing that fits is an error."""
    report = resbone_convert.load_checkpoint(model, path, strict=False)
    if not report.loaded:
        raise ValueError(f"no tensor of {path} fits the model: {report.problems()}")
    if not report.ok:
        logger.warning("%s (%s dialect): loaded %d tensors; %s", path, report.dialect, len(report.loaded),
                       report.problems())
    else:
        logger.info("loaded %d tensors from %s (%s dialect)", len(report.loaded), path, report.dialect)


def check_weights_file(weights: str) -> None:
    """`--weights` of eval / predict must name a checkpoint file: a folder or a missing path is the user's to fix."""
    if os.path.isdir(weights):
        raise ValueError(f"weights {weights} is a directory; pass a checkpoint file in it, e.g. "
                         f"{os.path.join(weights, 'model_final.pth')}")
    if not os.path.isfile(weights):
        raise ValueError(f"weights file {weights} does not exist")


def load_trained_weights(model: nn.Module, weights: str, *, what: str, allow_missing: bool = False) -> str | None:
    """`--weights` of eval / predict into `model`, which `what` names ("the detector this config builds"). Unlike
    MODEL.WEIGHT (often a backbone only), they must be the model the config builds: a tensor of another shape
    (classes, widths) is refused, and so is one left out (an R-18 file in an R-34 config) unless
    `allow_missing`, since it would stay random and make the numbers junk. Returns the problems of partial
    weights (logged), else None."""
    report = resbone_convert.load_checkpoint(model, weights, strict=False)
    if report.mismatched or not report.loaded:
        raise ValueError(f"weights {weights} do not fit {what} ({report.problems()}); use the config and overrides "
                         "the weights were trained with")
    if report.ok:
        return None
    if not allow_missing:
        raise ValueError(f"weights {weights} do not fill {what} ({report.problems()}); use the config the weights "
                         "were trained with, or pass --allow-missing (allow_missing=True) to run with those tensors "
                         "at their initial values")
    logger.warning("%s: partial weights: loaded %d tensors; %s", weights, len(report.loaded), report.problems())
    return report.problems()


def recorded_class_names(weights: str) -> list[str] | None:
    """The class names a resbone training checkpoint recorded; None for a plain state_dict."""
    if weights.endswith((".safetensors", ".pkl")):  # only resbone's training checkpoints record them
        return None
    try:
        state = load_training_state(weights)
    except ValueError:  # a pickle torch.load will not read safely: resbone.convert read its tensors
        return None
    if isinstance(state, dict) and isinstance(state.get("class_names"), list):
        return [str(n) for n in state["class_names"]]
    return None
