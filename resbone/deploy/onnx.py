"""ONNX export of any resbone model, checked by onnxruntime in tests/deploy/test_onnx.py."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

__all__ = ["export_onnx"]


def export_onnx(model: nn.Module, path: str | os.PathLike, *, input_size: Sequence[int] = (224, 224),
                in_channels: int | None = None, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Write `model` (eval mode) to `path` as ONNX, atomically; return the path.

    Inputs are named `images`; outputs `logits` for a classifier, `features.N` for a backbone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_onnx expects an nn.Module, got {type(model).__name__}")
    if len(input_size) != 2 or any(not isinstance(s, int) or s < 32 for s in input_size):
        raise ValueError(f"input_size must be (H, W) with both >= 32, got {tuple(input_size)!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"ONNX output {str(path)!r} is a directory; give a file name such as model.onnx")
    channels = in_channels or getattr(model, "in_channels", 3)
    modes = [(m, m.training) for m in model.modules()]
    try:
        return _export(model.eval(), path, torch.randn(1, channels, *input_size), opset, dynamic_batch)
    finally:
        for module, training in modes:  # the caller's model keeps its modes (frozen stages, norm_eval included)
            module.training = training


def _export(model: nn.Module, path: Path, example: torch.Tensor, opset: int, dynamic_batch: bool) -> Path:
    with torch.no_grad():
        outputs = model(example)
    names = ["logits"] if isinstance(outputs, torch.Tensor) else [f"features.{i}" for i in range(len(outputs))]
    axes = {n: {0: "batch"} for n in ["images", *names]} if dynamic_batch else None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the input checks, which are constant here
            torch.onnx.export(model, (example,), tmp, input_names=["images"], output_names=names,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
