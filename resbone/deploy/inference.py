"""The fast-inference recipe for every resbone model, the FCOS detector included.

`prepare_for_inference` returns a copy in eval mode with BatchNorm / FrozenBN folded into the convs
(resbone.deploy.fuse), weights in channels_last (NHWC: the layout oneDNN's and cuDNN's fastest
convolutions read), and optionally torch.compile'd with inductor *freezing*: the weights become constants
of the graph, so inductor folds what is left of the norms and the scalar ops into them and pre-packs
every conv / linear weight once for oneDNN (mkldnn) instead of at each call. Freezing applies to calls
under torch.no_grad / torch.inference_mode, which is how inference runs.

A detector (resbone.detection.detector.FCOS: a list of images in, a list of dicts out) keeps its
data-dependent parts eager: the resizing transform, the target assignment and the post-processing (a
varying number of boxes, NMS). What gets compiled is its `forward_network`, the dense network between them
(backbone, FPN, head), as one graph. Reference tests: tests/deploy/test_inference.py (outputs and
detections equal to the eager model's).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from resbone.deploy.fuse import fuse_conv_norm

__all__ = ["NETWORK_METHOD", "compile_model", "is_detector", "prepare_for_inference", "replace_network"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the method that runs a detector's dense network (resbone.detection.detector.FCOS); a classifier's is "forward"
NETWORK_METHOD = "forward_network"


def is_detector(model: nn.Module) -> bool:
    """True for a model with the detector calling convention: a `transform` module that batches a list of
    images and a `forward_network(batch)` that runs the dense network (resbone.detection.detector.FCOS)."""
    return callable(getattr(model, NETWORK_METHOD, None)) and isinstance(getattr(model, "transform", None),
                                                                         nn.Module)


def replace_network(model: nn.Module, wrap: Callable[[Callable], Callable], *,
                    method: str = NETWORK_METHOD) -> nn.Module:
    """Make `model.<method>` (the network: a detector's forward_network, a classifier's forward) what
    `wrap(network)` returns, on the instance, in place; returns the model. The one place resbone patches a
    network (torch.compile, channels_last): an instance attribute shadows the method, so the model's class and
    its state_dict names stay (no `_orig_mod.`) and the model's own forward calls the wrapped network."""
    network = getattr(model, method, None)
    if not callable(network):
        raise TypeError(f"{type(model).__name__} has no {method}(batch) method; compile / channels_last apply to "
                        f"a model's network method: a detector's {NETWORK_METHOD} (resbone.detection.detector.FCOS), "
                        "a classifier's forward")
    setattr(model, method, wrap(network))
    return model


def compile_options(mode: str = "default", *, freezing: bool = True) -> dict:
    """torch.compile `options` for `mode` (one of COMPILE_MODES) plus inductor freezing; torch.compile takes
    either a mode or options, so the mode's own options are spelled out here."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    import torch._inductor

    return {**torch._inductor.list_mode_options(mode), "freezing": bool(freezing)}


def compile_model(model: nn.Module, *, mode: str = "default", freezing: bool = True,
                  dynamic: bool | None = None) -> nn.Module:
    """torch.compile the dense part of `model`, in place for a detector (its `forward_network`); returns what to
    call: the compiled module for a backbone or classifier, the detector itself for a detector."""
    options = compile_options(mode, freezing=freezing)
    if is_detector(model):
        return replace_network(model, lambda network: torch.compile(network, options=options, dynamic=dynamic))
    return torch.compile(model, options=options, dynamic=dynamic)


def prepare_for_inference(model: nn.Module, *, fuse: bool = True, channels_last: bool = True,
                          compile: bool = False, mode: str = "default", freezing: bool = True) -> nn.Module:
    """A copy of `model` for fast inference: eval mode, norms folded into the convs (`fuse`), NHWC weights
    (`channels_last`), and with `compile` its dense part torch.compile'd (`mode`, inductor `freezing`).

    The copy computes what the eager model computes (float tolerance). A compiled copy is built on its
    first call (seconds to minutes); call it under torch.inference_mode() for freezing to apply."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_for_inference expects an nn.Module, got {type(model).__name__}")
    if compile and mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    model = fuse_conv_norm(model) if fuse else copy.deepcopy(model).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for parameter in model.parameters():  # frozen weights: no autograd bookkeeping, and freezing may fold them
        parameter.requires_grad_(False)
    if compile:
        model = compile_model(model, mode=mode, freezing=freezing)
    return model
