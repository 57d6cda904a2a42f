"""ONNX export of any resbone model: classifiers, backbones, re-id embeddings and the FCOS detector.

Inputs are named `images` (float, [N, C, H, W], the batch axis dynamic); outputs `logits` for a classifier,
`features.N` for a backbone, `embedding` ([N, C], the last map's global average: the re-id descriptor) with
`embedding=True`. A detector (resbone.deploy.inference.is_detector) exports its whole network, the
normalisation included, with decoded boxes and probabilities out; see resbone.deploy.detector_onnx for the
graph and for the numpy post-processing (thresholds, top-k, NMS) that completes it.
The file is written atomically (resbone.utils.files). Reference tests: tests/deploy/test_onnx.py
(onnxruntime against PyTorch: logits, feature maps, re-id embeddings, the detector's detections).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from resbone.deploy.detector_onnx import DetectorGraph
from resbone.deploy.inference import is_detector
from resbone.utils.files import atomic_path

__all__ = ["export_input_size", "export_onnx"]


class GlobalEmbedding(nn.Module):
    """A backbone's last feature map averaged over space, [N, C]: the descriptor re-id models compare."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        last = features if isinstance(features, torch.Tensor) else features[-1]
        return last.mean(dim=(2, 3)) if last.dim() == 4 else last


def export_input_size(model: nn.Module) -> tuple[int, int]:
    """The default (H, W): 224 x 224, or for a detector a square that holds any test image once resized
    (INPUT.MAX_SIZE_TEST padded up to the size divisibility)."""
    if not is_detector(model):
        return (224, 224)
    divisor = max(int(getattr(model.transform, "size_divisibility", 0) or 1), 1)
    side = -(-int(model.transform.max_size_test) // divisor) * divisor
    return (side, side)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, input_size: Sequence[int] | None = None,
                in_channels: int | None = None, opset: int = 17, dynamic_batch: bool = True,
                embedding: bool = False) -> Path:
    """Write `model` (eval mode) to `path` as ONNX, atomically; return the path.

    `input_size` (H, W) defaults to export_input_size(model). A detector is exported for images padded to
    it (multiples of its size divisibility); `embedding=True` exports a backbone's pooled last feature map
    instead of its maps."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_onnx expects an nn.Module, got {type(model).__name__}")
    input_size = export_input_size(model) if input_size is None else input_size
    if len(input_size) != 2 or any(not isinstance(s, int) or s < 32 for s in input_size):
        raise ValueError(f"input_size must be (H, W) with both >= 32, got {tuple(input_size)!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"ONNX output {str(path)!r} is a directory; give a file name such as model.onnx")
    if embedding and (is_detector(model) or getattr(model, "num_classes", 0)):
        raise ValueError("embedding=True needs a backbone (a model built with num_classes=None), got "
                         f"{type(model).__name__} with num_classes={getattr(model, 'num_classes', None)!r}")
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        if is_detector(model):
            graph = DetectorGraph(model, tuple(input_size))
            return write_onnx(graph, path, graph.example_inputs(), graph.output_names, opset=opset,
                              dynamic_batch=dynamic_batch, metadata=graph.metadata())
        channels = in_channels or getattr(model, "in_channels", 3)
        graph = GlobalEmbedding(model) if embedding else model
        return _export(graph, path, torch.randn(1, channels, *input_size), opset, dynamic_batch)
    finally:
        for module, training in modes:  # the caller's model keeps its modes (frozen stages, norm_eval included)
            module.training = training


def write_onnx(graph: nn.Module, path: Path, inputs: dict[str, torch.Tensor], output_names: Sequence[str], *,
               opset: int, dynamic_batch: bool, metadata: dict[str, str] | None = None) -> Path:
    """torch.onnx.export (TorchScript tracing) of `graph` to `path`, atomically; `metadata` goes into the
    model's metadata_props (onnxruntime: session.get_modelmeta().custom_metadata_map)."""
    names = [*inputs, *output_names]
    axes = {n: {0: "batch"} for n in names} if dynamic_batch else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the input checks, which are constant here
            torch.onnx.export(graph, tuple(inputs.values()), tmp, input_names=list(inputs),
                              output_names=list(output_names), dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
        if metadata:
            import onnx

            proto = onnx.load(tmp)
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(proto, tmp)
    return path


def _export(model: nn.Module, path: Path, example: torch.Tensor, opset: int, dynamic_batch: bool) -> Path:
    with torch.no_grad():
        outputs = model(example)
    if isinstance(outputs, torch.Tensor):
        names = ["embedding"] if getattr(model, "is_embedding", isinstance(model, GlobalEmbedding)) else ["logits"]
    else:
        names = [f"features.{i}" for i in range(len(outputs))]
    return write_onnx(model, path, {"images": example}, names, opset=opset, dynamic_batch=dynamic_batch)
