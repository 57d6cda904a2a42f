"""Faster training and evaluation, for every task: channels_last, autocast (AMP) and torch.compile.

Only a model's network method is compiled: a classifier's `forward`; a detector's `forward_network`
(backbone, FPN, head), the default here; resbone.deploy.inference.replace_network does the patching, for
training here and for inference there. A detector's target assignment, losses and post-processing stay
eager: they hold data-dependent shapes (positives, score thresholds, NMS)
and `.item()` reductions across processes, which would break a graph at every step. Compiling the
bound method, not the module, keeps the model's class and its state_dict names (no `_orig_mod.`), so
checkpoints of compiled and eager runs are interchangeable.

Image sizes: the detector's transform pads every batch to a multiple of DATALOADER.SIZE_DIVISIBILITY,
so all sizes of one bucket give the same tensor shape and reuse one graph; with `dynamic=None`
(torch's default) the first new bucket recompiles once with symbolic sizes, later ones reuse it.
Anchor: torch.compile's documentation ("compiling a module's submethod") and detectron2's AMP trainer.
Proven by tests/engine/test_accelerate.py (compiled losses and gradients equal the eager ones; no
recompilation within a size bucket nor after the first size change).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Optional

import torch
from torch import nn

from resbone.deploy.inference import NETWORK_METHOD, replace_network

__all__ = ["AMP_DTYPES", "accelerate_as_configured", "accelerate_model", "amp_dtype", "autocast", "compile_network",
           "cpu_has_native_bf16", "to_channels_last"]

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# SOLVER.AMP_DTYPE 'auto': fp16 (with a GradScaler) on GPUs; on CPUs only bf16 has autocast kernels.
DEFAULT_AMP_DTYPE = {"cuda": "float16", "cpu": "bfloat16"}


def amp_dtype(device: torch.device, name: Optional[str] = "auto") -> torch.dtype:
    """The autocast dtype for `device`: SOLVER.AMP_DTYPE ('float16' / 'bfloat16') or, for 'auto', the
    device's default."""
    device = torch.device(device)
    if name in (None, "", "auto"):
        name = DEFAULT_AMP_DTYPE.get(device.type)
        if name is None:
            raise ValueError(f"SOLVER.AMP: no default autocast dtype for device {device.type!r}; "
                             f"set SOLVER.AMP_DTYPE to one of {sorted(AMP_DTYPES)}")
    if name not in AMP_DTYPES:
        raise ValueError(f"SOLVER.AMP_DTYPE must be 'auto' or one of {sorted(AMP_DTYPES)}, got {name!r}")
    return AMP_DTYPES[name]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX512-BF16 / AMX). Without them bf16 autocast is
    emulated: the demo's train step ran 18x slower in bf16 than in fp32 on an AVX2 CPU."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, *, enabled: bool, dtype: Optional[str] = "auto"):
    """torch.autocast for the device (a no-op context when not enabled)."""
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    dtype = amp_dtype(device, dtype)
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        warnings.warn("SOLVER.AMP with bfloat16 on a CPU without native bf16 (AVX512-BF16 / AMX) is emulated and "
                      "much slower than float32 here; leave SOLVER.AMP off on this machine", stacklevel=2)
    return torch.autocast(device.type, dtype=dtype)


DEFAULT_METHOD = NETWORK_METHOD


def to_channels_last(model: nn.Module, *, method: str = DEFAULT_METHOD) -> nn.Module:
    """NHWC weights, and the batch turned NHWC on its way into the network (mkldnn / cuDNN then skip
    the layout reorders around every conv). Losses and outputs are unchanged up to float rounding."""
    def channels_last(network):
        def channels_last_network(batch: torch.Tensor, *args, **kwargs):
            return network(batch.contiguous(memory_format=torch.channels_last), *args, **kwargs)
        return channels_last_network

    replace_network(model, channels_last, method=method)
    return model.to(memory_format=torch.channels_last)


def compile_network(model: nn.Module, *, backend: str = "inductor", dynamic: Optional[bool] = None,
                    mode: Optional[str] = None, method: str = DEFAULT_METHOD) -> nn.Module:
    """torch.compile the network part (`model.<method>`) in place; returns the model. The bound method is
    compiled, not the module: the state_dict keeps its names (no `_orig_mod.`)."""
    return replace_network(model, lambda network: torch.compile(network, backend=backend, dynamic=dynamic,
                                                                mode=mode), method=method)


def accelerate_model(model: nn.Module, *, compile: bool = False, channels_last: bool = False,
                     backend: str = "inductor", method: str = DEFAULT_METHOD) -> nn.Module:
    """MODEL.CHANNELS_LAST then MODEL.COMPILE (the layout change inside the compiled graph)."""
    if channels_last:
        to_channels_last(model, method=method)
    if compile:
        compile_network(model, backend=backend, method=method)
    return model


def accelerate_as_configured(model: nn.Module, cfg, *, method: str = DEFAULT_METHOD) -> nn.Module:
    """accelerate_model with the config's MODEL.CHANNELS_LAST and MODEL.COMPILE: what training applies, and
    eval / predict apply the same way to a checkpoint."""
    return accelerate_model(model, compile=bool(cfg.MODEL.COMPILE), channels_last=bool(cfg.MODEL.CHANNELS_LAST),
                            method=method)
