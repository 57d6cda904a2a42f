"""Inference helpers: fold norms into convs, channels_last, torch.compile, ONNX export (detector included),
int8 quantization for the CPU."""
from resbone.deploy.detector_onnx import OnnxDetector, decode_detections
from resbone.deploy.fuse import fuse_conv_norm
from resbone.deploy.inference import compile_model, prepare_for_inference
from resbone.deploy.onnx import export_input_size, export_onnx
from resbone.deploy.qat import quantize_qat
from resbone.deploy.quantize import load_quantized, quantize, quantize_detector, save_quantized

__all__ = ["OnnxDetector", "compile_model", "decode_detections", "export_input_size", "export_onnx",
           "fuse_conv_norm", "load_quantized", "prepare_for_inference", "quantize", "quantize_detector",
           "quantize_qat", "save_quantized"]
