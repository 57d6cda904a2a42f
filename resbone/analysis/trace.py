"""One forward pass that counts multiply-adds and propagates receptive fields through the ops it sees.

A `TorchFunctionMode` watches every torch function the model calls (so functional convolutions, matmuls
in attention plugins and torchvision's deformable conv are seen as well as `nn.Conv2d`):
- MACs: convolutions, linear layers and matrix products count their multiply-adds, one per weight use,
  bias excluded; norms, activations and pooling count nothing. This is how torchvision's published
  "GFLOPS" (really GMACs: resnet50 4.089, resnet18 1.814, mobilenet_v2 0.301) and fvcore count, and
  what tests/analysis/test_summary.py checks against torchvision's weight metadata and
  `torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per MAC).
- Receptive field: each tensor carries (size, jump) per spatial axis, the textbook recursion
  r_out = r_in + (k - 1) * dilation * j_in, j_out = j_in * stride (Araujo et al., Distill 2019),
  the maximum over the inputs where paths join (residual additions, concatenations). Global pooling,
  spatial reductions, instance/group normalization (statistics over the map) and matrix products over
  flattened positions make the field the whole input (`math.inf`): that is the truth for SE, IBN or
  non-local blocks, not an approximation; `Field.local` keeps the convolutional field beside it. Padding does not
  change the size; deformable convolution is counted at its nominal kernel. The tests check the
  figures against the set of input pixels with nonzero gradient.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class Field:
    """Receptive field size and jump (cumulative stride), per axis (height, width), in input pixels.

    `local` is the field through convolutions and pooling only, global context (SE, non-local) left
    out: what the table shows next to "global" so an SE-ResNet's stages stay comparable to a ResNet's."""

    size: tuple[float, float] = (1.0, 1.0)
    jump: tuple[float, float] = (1.0, 1.0)
    local: tuple[float, float] = (1.0, 1.0)

    def grow(self, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> "Field":
        def widen(sizes: tuple[float, float]) -> tuple[float, ...]:
            return tuple(r + (k - 1) * d * j for r, k, d, j in zip(sizes, kernel, dilation, self.jump))

        return Field(widen(self.size), tuple(j * s for j, s in zip(self.jump, stride)),  # type: ignore[arg-type]
                     widen(self.local))  # type: ignore[arg-type]

    def made_global(self, axes: tuple[bool, bool] = (True, True)) -> "Field":
        size = tuple(math.inf if g else r for r, g in zip(self.size, axes))
        return Field(size, self.jump, self.local)  # type: ignore[arg-type]

    def with_jump(self, jump: tuple[float, ...]) -> "Field":
        return Field(self.size, jump, self.local)  # type: ignore[arg-type]

    @staticmethod
    def join(fields: list["Field"]) -> "Field":
        # Paths meet: the farthest-reaching path sets the size; the finest grid sets the jump
        # (an FPN adds an upsampled coarse map to a fine one).
        size = tuple(max(f.size[a] for f in fields) for a in range(2))
        jump = tuple(min(f.jump[a] for f in fields) for a in range(2))
        local = tuple(max(f.local[a] for f in fields) for a in range(2))
        return Field(size, jump, local)  # type: ignore[arg-type]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1])) if value else (1, 1)
    return (int(value), int(value))


def _pair_or_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple, torch.Size)) else [value]


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _tensors(values: Any) -> list[torch.Tensor]:
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (list, tuple)):
        return [t for v in values for t in _tensors(v)]
    if isinstance(values, dict):
        return [t for v in values.values() for t in _tensors(v)]
    return []


def _prod(values: Any) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


_CONV = {"conv1d", "conv2d", "conv3d", "convolution"}
_CONV_TRANSPOSE = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_MATMUL = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm"}
_ADD_MATMUL = {"addmm", "baddbmm", "addbmm"}
_POOL = {"max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices"}
_ADAPTIVE_POOL = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d",
                  "adaptive_max_pool2d_with_indices"}
_RESIZE = {"interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle"}
_RESHAPE = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "squeeze", "unsqueeze",
            "contiguous", "view_as", "reshape_as", "t", "movedim", "__getitem__", "chunk", "split",
            "unbind", "expand", "expand_as", "clone", "to", "float", "half", "type_as", "detach"}
# Ops that mix every position of a flattened (non-4-D) tensor: attention and fully connected heads.
_MIXING = _MATMUL | _ADD_MATMUL | {"linear", "softmax", "log_softmax", "einsum", "mean", "sum", "amax",
                                   "amin", "max", "min", "std", "var", "logsumexp", "norm",
                                   "scaled_dot_product_attention"}


class Tracer(TorchFunctionMode):
    """Counts MACs and propagates `Field`s for the tensors derived from the ones passed to `watch`.

    `on_macs(n)` is called for every counted op (the summary uses it to credit the running stage).
    """

    def __init__(self, on_macs: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.macs = 0
        self._on_macs = on_macs
        self._fields: dict[int, tuple[weakref.ref, Field]] = {}

    def watch(self, tensor: torch.Tensor, field: Field | None = None) -> None:
        self._fields[id(tensor)] = (weakref.ref(tensor), field or Field())

    def field(self, tensor: torch.Tensor) -> Field | None:
        entry = self._fields.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        outputs = _tensors(out)
        if not outputs:
            return out
        macs = self._count(name, args, kwargs, outputs[0])
        if macs:
            self.macs += macs
            if self._on_macs is not None:
                self._on_macs(macs)
        field = self._propagate(name, args, kwargs, outputs[0])
        if field is not None:
            for tensor in outputs:
                self.watch(tensor, field)
        return out

    # ---- multiply-adds ----------------------------------------------------------------------------
    @staticmethod
    def _count(name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> int:
        if name in _CONV or name == "deform_conv2d":
            weight = _arg(args, kwargs, 1, "weight")
            return out.numel() * _prod(weight.shape[1:]) if isinstance(weight, torch.Tensor) else 0
        if name in _CONV_TRANSPOSE:
            x, weight = args[0], _arg(args, kwargs, 1, "weight")
            return x.numel() * _prod(weight.shape[1:])
        if name == "linear":
            weight = _arg(args, kwargs, 1, "weight")
            return out.numel() * int(weight.shape[-1])
        if name in _MATMUL or name in _ADD_MATMUL:
            first = args[1] if name in _ADD_MATMUL else args[0]
            if name == "__rmatmul__":
                first = args[1]
            inner = int(first.shape[-1]) if isinstance(first, torch.Tensor) and first.dim() else 1
            batches = int(first.shape[0]) if name == "addbmm" else 1  # addbmm sums its batch away
            return out.numel() * inner * batches
        if name == "scaled_dot_product_attention":
            query, key = args[0], args[1]
            return 2 * query.numel() * int(key.shape[-2])
        return 0

    # ---- receptive field ----------------------------------------------------------------------------
    def _propagate(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> Field | None:
        inputs = _tensors(args) + _tensors(kwargs)
        known = [(t, f) for t in inputs if (f := self.field(t)) is not None]
        if not known:
            return None
        first, first_field = known[0]
        spatial_in = first.dim() == 4 and out.dim() == 4
        if name in _CONV or name == "deform_conv2d" or name in _CONV_TRANSPOSE:
            if not spatial_in:
                return first_field
            # Only the data input: the offsets of a deformable conv come from the same input.
            weight = _arg(args, kwargs, 1, "weight")
            kernel = tuple(int(k) for k in weight.shape[-2:])
            if name == "deform_conv2d":
                stride = (int(args[5]), int(args[6]))
                dilation = (int(args[9]), int(args[10]))
            else:
                stride = _pair(_arg(args, kwargs, 3, "stride", 1))
                dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
            if name in _CONV_TRANSPOSE:
                jump = tuple(j / s for j, s in zip(first_field.jump, stride))
                return first_field.with_jump(jump).grow(kernel, (1, 1), dilation)  # type: ignore[arg-type]
            return first_field.grow(kernel, stride, dilation)  # type: ignore[arg-type]
        if name in _POOL and spatial_in:
            kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
            stride_arg = _arg(args, kwargs, 2, "stride")
            stride = _pair(stride_arg) if stride_arg not in (None, [], ()) else kernel
            dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
            return first_field.grow(kernel, stride, dilation)
        if name in _ADAPTIVE_POOL and spatial_in:
            size_in, size_out = first.shape[-2:], out.shape[-2:]
            if all(o == 1 for o in size_out):
                return first_field.made_global()
            kernel = tuple(math.ceil(i / o) for i, o in zip(size_in, size_out))
            stride = tuple(max(1, i // o) for i, o in zip(size_in, size_out))
            return first_field.grow(kernel, stride, (1, 1))  # type: ignore[arg-type]
        if name in _RESIZE and spatial_in:
            jump = tuple(j * i / o for j, i, o in zip(first_field.jump, first.shape[-2:], out.shape[-2:]))
            return first_field.with_jump(jump)
        field = Field.join([f for _, f in known])
        if name in _RESHAPE or name.rstrip("_") in _RESHAPE:
            return field
        if name in ("group_norm", "instance_norm") and spatial_in:
            # Statistics over the whole map: every output pixel depends on every input pixel (IBN, GN).
            return field.made_global(tuple(i > 1 for i in first.shape[-2:]))  # type: ignore[arg-type]
        if name == "layer_norm" and spatial_in and len(_pair_or_list(_arg(args, kwargs, 1, "normalized_shape"))) >= 2:
            return field.made_global(tuple(i > 1 for i in first.shape[-2:]))  # type: ignore[arg-type]
        if first.dim() == 4 and out.dim() == 4:
            # A reduction with keepdim over H and W (the squeeze of squeeze-excitation).
            collapsed = tuple(o == 1 and i > 1 for i, o in zip(first.shape[-2:], out.shape[-2:]))
            return field.made_global(collapsed) if any(collapsed) else field  # type: ignore[arg-type]
        if first.dim() == 4 and out.dim() < 4 and name not in _RESHAPE:
            return field.made_global()  # x.mean((2, 3)) and friends
        if first.dim() != 4 and name in _MIXING:
            return field.made_global()  # positions were flattened and are now mixed
        return field


def run_traced(model: torch.nn.Module, x: torch.Tensor, tracer: Tracer) -> Any:
    """Run `model(x)` in eval mode without gradients under `tracer`, restoring each module's mode."""
    modes = {m: m.training for m in model.modules()}
    try:
        for m in modes:
            m.training = False
        with torch.no_grad():
            tracer.watch(x)
            with tracer:
                return model(x)
    finally:
        for m, mode in modes.items():
            m.training = mode
