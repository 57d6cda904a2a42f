"""Inference helpers: fold norms into convs, channels_last, torch.compile, ONNX export."""
from resbone.deploy.fuse import fuse_conv_norm, prepare_for_inference
from resbone.deploy.onnx import export_onnx

__all__ = ["export_onnx", "fuse_conv_norm", "prepare_for_inference"]
