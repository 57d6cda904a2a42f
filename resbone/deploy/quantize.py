"""int8 inference on the CPU: post-training static quantization of every resbone model and of the FCOS
detector's network (backbone + FPN + head), per-channel int8 weights, int8 activations.

Anchor: torchvision's `models/quantization` (quantized ResNet / ResNeXt / MobileNetV2): fuse Conv+BN(+ReLU),
observe activations on calibration batches, convert with the `x86` qconfig (per-channel symmetric weights,
histogram-observed activations). Reference test: tests/deploy/test_quantize.py (a trained classifier's int8
outputs against its float outputs and against torchvision's own quantized resnet18 given the same float
weights and calibration batches, kernel for kernel the same int8 ops; the shapes detector's detections).

The one API choice lives here. torch 2.14.1 keeps `torch.ao.quantization`'s FX graph mode
(`prepare_fx` / `convert_fx`, `prepare_qat_fx` for resbone.deploy.qat), which traces resbone's models
unmodified (no QuantStub / FloatFunctional edits as torchvision's eager flow needs) and ends in the same
kernels as that flow: one input quantize, Conv+BN+ReLU as one `quantized::conv2d_relu`, the residual add and
its ReLU as one `quantized::add_relu` (torchvision's FloatFunctional.add_relu), one dequantize (bench.backbone
--int8 --profile prints both graphs op by op; FX adds only a scalar read of each add's output scale).
`torch.ao.quantization.quantize_pt2e` is gone from torch 2.14.1,
and torchao 0.18.0's `X86InductorQuantizer` + `prepare_pt2e` failed on torch 2.14.1's exported resnet50
("Input partition has more than one output node", issue 21; measured again here with torchao 0.18.0 on
resbone's and torchvision's resnet18 alike). What replaces this module once that works:
`torch.export` -> `torchao.quantization.pt2e.prepare_pt2e(model, X86InductorQuantizer())` -> calibrate ->
`convert_pt2e` -> `torch.compile` (inductor lowers the q/dq pattern to oneDNN int8 kernels); the public
`quantize(model, calibration, backend=...)` keeps its signature.

Saving: TorchScript (torch.jit.trace + torch.jit.save, deprecated in torch 2.14 but kept): a quantized
graph's packed int8 weights do not round-trip through a plain state_dict without rebuilding the graph, and
torch.jit.load reads code and tensors, never arbitrary pickled objects. The pt2e flow above would save with
torch.export.save instead.

Parts that have no int8 kernel or would not survive 8-bit activations (deformable convs: torchvision's
`deform_conv2d` is float only; the attention plugins' softmax / matmul) stay float modules inside the graph:
dequantize before, quantize after, and one warning names them (also `model.float_parts`). The detector's
resizing, location decoding and NMS run in float around the int8 network, as they do in float.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import os
import warnings
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from resbone.deploy.detector_network import DetectorNetwork
from resbone.deploy.fuse import as_batch_norm
from resbone.deploy.inference import is_detector
from resbone.deploy.int8_cpu import cpu_int8_features, cpu_int8_line, default_backend, engines, has_vnni

__all__ = ["BACKENDS", "DetectorNetwork", "attach_network", "cpu_int8_features", "cpu_int8_line", "default_backend",
           "float_parts_summary", "load_quantized", "qconfig_mapping", "quantize", "quantize_detector",
           "save_quantized"]

BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")


def _float_module_types() -> tuple[type, ...]:
    """Modules kept float (and left untraced) inside a quantized graph."""
    from resbone.layers.attention import ContextBlock, GeneralizedAttention, NonLocal2d
    from resbone.layers.conv import DeformConv2dPack, ModulatedDeformConv2dPack

    return DeformConv2dPack, ModulatedDeformConv2dPack, ContextBlock, NonLocal2d, GeneralizedAttention


def _first_tensor(item: Any, index: int) -> torch.Tensor:
    """A calibration item's input batch: a tensor, or the first element of an (images, labels) pair."""
    if isinstance(item, (list, tuple)) and item and isinstance(item[0], torch.Tensor) and item[0].dim() == 4:
        item = item[0]
    if not isinstance(item, torch.Tensor) or item.dim() != 4 or not item.is_floating_point():
        raise TypeError(f"calibration item {index} must be a float batch tensor (N, C, H, W) or an (images, "
                        f"labels) pair, got {_describe(item)}")
    return item


def _detector_batch(detector: nn.Module, item: Any, index: int) -> torch.Tensor:
    """A detector's calibration item (a list of [3, H, W] images, an (images, targets) pair, or a 4-D batch
    of images) through the detector's own resizing and normalization."""
    if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (list, tuple)):
        item = item[0]
    images = list(item.unbind(0)) if isinstance(item, torch.Tensor) and item.dim() == 4 else item
    if not isinstance(images, (list, tuple)) or not images or not all(
            isinstance(im, torch.Tensor) and im.dim() == 3 and im.is_floating_point() for im in images):
        raise TypeError(f"detector calibration item {index} must be a list of float images [3, H, W] (0..1), an "
                        f"(images, targets) pair or an (N, 3, H, W) batch, got {_describe(item)}")
    with torch.no_grad():
        return detector.transform(list(images))[0]


def _describe(item: Any) -> str:
    if isinstance(item, torch.Tensor):
        return f"a {item.dtype} tensor of shape {tuple(item.shape)}"
    return type(item).__name__


def _calibration_batches(calibration: Any, max_batches: int | None, convert) -> list[torch.Tensor]:
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    if not isinstance(calibration, Iterable) or isinstance(calibration, (str, bytes)):
        raise TypeError(f"calibration must be a batch tensor, a sequence of batches or a DataLoader, got "
                        f"{type(calibration).__name__}")
    batches = [convert(item, i) for i, item in enumerate(itertools.islice(calibration, max_batches))]
    if not batches:
        raise ValueError("calibration holds no batch: give at least one batch of representative inputs")
    return batches


def _check_backend(backend: str) -> str:
    if backend == "auto":
        return default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend not in engines():
        raise ValueError(f"backend {backend!r} is not built into this torch (its quantized engines: "
                         f"{engines()})")
    return backend


def _float_parts(graph_module: nn.Module) -> list[str]:
    """Modules that still run float in a converted graph: kept-float types and weighted torch.nn modules
    FX found no int8 kernel for."""
    modules = dict(graph_module.named_modules())
    kept = _float_module_types()
    names: list[str] = []
    for node in graph_module.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if module is None or type(module).__module__.startswith("torch.ao."):
            continue
        if isinstance(module, kept) or (type(module).__module__.startswith("torch.nn.")
                                        and any(True for _ in module.parameters(recurse=False))):
            names.append(f"{node.target} ({type(module).__name__})")
    return list(dict.fromkeys(names))  # a shared module (the FCOS head over 5 levels) once


def _with_batch_norms(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose FrozenBatchNorm2d are nn.BatchNorm2d: FX fuses Conv+BN+ReLU into one int8
    conv (folding BN beforehand would leave an Identity between conv and ReLU, and two kernels)."""
    from torchvision.ops import FrozenBatchNorm2d

    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, FrozenBatchNorm2d):
                setattr(module, name, as_batch_norm(child))
    return model


def qconfig_mapping(backend: str, *, qat: bool = False):
    """torch's default qconfig mapping for `backend` (per-channel symmetric int8 weights, uint8 activations:
    histogram-observed, or fake-quantized with moving-average ranges for `qat`). x86 / fbgemm reduce
    activations to 7 bits against an overflow of AVX2's u8*s8 multiply-add (vpmaddubsw saturates int16); VNNI
    and AMX accumulate in int32, so there the full 8 bits are kept, as oneDNN's qconfig does: 8 bits cost
    1.6 AP on the shapes demo, 7 bits 5.3. The bits change no kernel: the same int8 convolutions run."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    default = get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping
    return default("onednn" if backend in ("x86", "fbgemm") and has_vnni() else backend)


def float_parts_summary(parts: Sequence[str], shown: int = 3) -> str:
    """'GroupNorm x40: heads.0.cls_tower.1, ... ' per module type, a few names each."""
    by_type: dict[str, list[str]] = {}
    for part in parts:
        name, _, kind = part.rpartition(" (")
        by_type.setdefault(kind.rstrip(")"), []).append(name)
    return "; ".join(f"{kind} x{len(names)}: {', '.join(names[:shown])}{', ...' if len(names) > shown else ''}"
                     for kind, names in by_type.items())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao's deprecation notices: the choice of API is documented above."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "Please use quant_min and quant_max", UserWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
        yield


def _prepare(model: nn.Module, example: torch.Tensor, backend: str, *, qat: bool = False) -> nn.Module:
    """FX graph mode's prepare (observers, or fake quantization for `qat`) with Conv+BN(+ReLU) fused; the
    parts with no int8 kernel are left untraced and float."""
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    torch.backends.quantized.engine = backend
    kept = _float_module_types()
    mapping = qconfig_mapping(backend, qat=qat)
    for module_type in kept:
        mapping.set_object_type(module_type, None)
    custom = PrepareCustomConfig().set_non_traceable_module_classes(list(kept))
    with _quiet():
        return (prepare_qat_fx if qat else prepare_fx)(model, mapping, (example,), prepare_custom_config=custom)


def _convert(prepared: nn.Module, backend: str) -> nn.Module:
    """The int8 graph of a prepared (observed or fake-quantized) one, with `backend` and `float_parts` noted."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        quantized = convert_fx(prepared.eval())
    quantized.backend = backend
    quantized.float_parts = _float_parts(quantized)
    if quantized.float_parts:
        warnings.warn(f"int8: {len(quantized.float_parts)} part(s) have no int8 kernel and stay float inside the "
                      f"quantized graph ({float_parts_summary(quantized.float_parts)}; all in .float_parts)",
                      stacklevel=4)
    return quantized


def _quantize_module(model: nn.Module, batches: Sequence[torch.Tensor], backend: str) -> nn.Module:
    """Post-training: fold norms (FrozenBN too), fuse Conv(+ReLU), observe `batches`, convert to int8."""
    prepared = _prepare(_with_batch_norms(model), batches[0], backend)
    with torch.no_grad(), _quiet():
        for batch in batches:
            prepared(batch)
    return _convert(prepared, backend)


def quantize(model: nn.Module, calibration: Any, *, backend: str = "x86",
             max_batches: int | None = None) -> nn.Module:
    """An int8 copy of `model` (a resbone classifier or backbone, or an FCOS detector) for CPU inference.

    calibration: a float batch (N, C, H, W), a sequence of batches, or a DataLoader (yielding batches or
    (batches, labels) pairs); for a detector, lists of images [3, H, W] in 0..1 as it takes them. At most
    `max_batches` are observed. backend: 'x86' (default), 'fbgemm', 'onednn', 'qnnpack' or 'auto'
    (`default_backend()`); it also becomes torch.backends.quantized.engine, which must stay the same while
    the int8 model runs. A detector comes back whole (resizing and NMS float, `forward_network` int8)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize expects an nn.Module, got {type(model).__name__}")
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be None or an int >= 1, got {max_batches!r}")
    backend = _check_backend(backend)
    if is_detector(model):
        return quantize_detector(model, calibration, backend=backend, max_batches=max_batches)
    return _quantize_module(model, _calibration_batches(calibration, max_batches, _first_tensor), backend)


def quantize_detector(detector: nn.Module, calibration: Any, *, backend: str = "x86",
                      max_batches: int | None = None) -> nn.Module:
    """A copy of an FCOS detector whose network (backbone, FPN, head) is int8; resizing, normalization,
    location decoding and NMS stay float. `detector.forward_network` is the int8 graph module."""
    if not is_detector(detector):
        raise TypeError(f"quantize_detector expects an FCOS detector (a `transform` and a `forward_network`), got "
                        f"{type(detector).__name__}")
    backend = _check_backend(backend)
    detector = copy.deepcopy(detector).eval()
    batches = _calibration_batches(calibration, max_batches, lambda item, i: _detector_batch(detector, item, i))
    network = _quantize_module(DetectorNetwork(detector), batches, backend)
    return attach_network(detector, network)


def attach_network(detector: nn.Module, network: nn.Module) -> nn.Module:
    """Make `network` (an int8 graph module, or one loaded back with torch.jit.load) the detector's
    `forward_network`, in place; registered as the submodule `int8_network` so that .eval() / .to() reach it."""
    detector.int8_network = network
    # an instance attribute shadows the method (nn.Module.__setattr__ would only register the submodule)
    object.__setattr__(detector, "forward_network", network)
    return detector


def save_quantized(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *,
                   meta: dict | None = None) -> str:
    """Write an int8 model (or an int8 detector's network) as TorchScript, traced on `example` (a batch),
    atomically; `meta` (JSON) and the quantized engine travel in the file. torch.jit.load reads it back
    without unpickling Python objects."""
    import json

    from resbone.utils.files import atomic_write

    network = model.int8_network if is_detector(model) else model
    if not hasattr(network, "backend"):
        raise TypeError(f"save_quantized expects a model returned by resbone.deploy.quantize, got "
                        f"{type(model).__name__}")
    info = {**(meta or {}), "backend": network.backend, "float_parts": network.float_parts}
    with torch.no_grad(), warnings.catch_warnings():  # TorchScript's deprecation: see the module docstring
        warnings.simplefilter("ignore", (FutureWarning, torch.jit.TracerWarning))
        traced = torch.jit.trace(network, example, strict=False, check_trace=False)
        with atomic_write(path) as handle:
            torch.jit.save(traced, handle, _extra_files={"resbone_int8.json": json.dumps(info)})
    return str(path)


def load_quantized(path: str | os.PathLike, detector: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """(module, meta) from `save_quantized`'s file; sets torch's quantized engine to the one it was made
    for. With `detector` (the float FCOS detector of the same config), the module becomes its network and
    the detector is returned instead."""
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no int8 model file at {path!r} (write one with `resbone quantize`)")
    extra = {"resbone_int8.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra["resbone_int8.json"]:
        raise ValueError(f"{path} is a TorchScript file but not one `resbone quantize` wrote (no int8 metadata)")
    meta = json.loads(extra["resbone_int8.json"])
    torch.backends.quantized.engine = _check_backend(meta["backend"])
    if detector is not None:
        return attach_network(copy.deepcopy(detector).eval(), module), meta
    return module, meta
