"""Atomic training checkpoints, resuming, and loading MODEL.WEIGHT / --weights files safely.

Anchor: FCOS/maskrcnn-benchmark `utils/checkpoint.py` (`model_NNNNNNN.pth`, `model_final.pth` and a
`last_checkpoint` file naming the newest) with two changes: every file is written to a temporary name
and moved in place with os.replace (an interrupted save never leaves a truncated checkpoint), and
files are read with torch.load(weights_only=True) (no code runs from a checkpoint). Proven by
tests/engine/test_trainer.py (resume).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

__all__ = ["save_checkpoint", "last_checkpoint", "load_checkpoint", "load_weights", "read_state_dict"]

logger = logging.getLogger("resbone")


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def save_checkpoint(output_dir: str, name: str, state: dict[str, Any]) -> str:
    """Write OUTPUT_DIR/name atomically and record it in OUTPUT_DIR/last_checkpoint; returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    _atomic_write_text(os.path.join(output_dir, "last_checkpoint"), name)
    return path


def last_checkpoint(output_dir: str) -> str | None:
    record = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(record):
        return None
    with open(record) as handle:
        name = handle.read().strip()
    path = name if os.path.isabs(name) else os.path.join(output_dir, name)
    return path if os.path.isfile(path) else None


def load_checkpoint(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code, a truncated file, not a checkpoint at all
        raise ValueError(f"checkpoint {path} cannot be read safely (torch.load weights_only=True): "
                         f"{error}") from None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The model weights of a file: a resbone checkpoint ('model'), a plain state_dict, or .safetensors."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    elif path.endswith(".pkl"):
        raise ValueError(f"{path} is a Caffe2/Detectron pickle: convert it first with `resbone convert` "
                         "and pass the converted file")
    else:
        state = load_checkpoint(path)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model: nn.Module, path: str) -> None:
    """Load a whole-detector checkpoint, or a backbone-only one into `model.backbone` (FCOS's
    MODEL.WEIGHT is usually an ImageNet backbone). Tensors whose shape differs (another number of
    classes) are skipped with a warning; no matching key at all is an error."""
    state = read_state_dict(path)
    target, own = model, model.state_dict()
    if not set(state) & set(own) and hasattr(model, "backbone"):
        target, own = model.backbone, model.backbone.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no tensor of {path} matches the model's parameter names (e.g. "
                         f"{next(iter(state), '-')!r} vs {next(iter(own), '-')!r}); convert it with "
                         "`resbone convert` first")
    skipped = sorted(k for k in state if k in own and k not in matched)
    if skipped:
        logger.warning("%s: %d tensors have another shape and are not loaded: %s", path, len(skipped),
                       ", ".join(skipped[:5]))
    missing = [k for k in own if k not in matched]
    target.load_state_dict(matched, strict=False)
    logger.info("loaded %d tensors from %s (%d of the model's left as initialised)", len(matched), path,
                len(missing))
