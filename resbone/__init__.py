"""resbone: one PyTorch implementation of the ResNet family, speaking every ecosystem's dialect."""
from resbone.models.registry import create_model, is_model, list_models, register_model
from resbone.models.resnet import BasicBlock, Bottleneck, ResLayer, ResNet

__version__ = "0.1.0"
__all__ = ["BasicBlock", "Bottleneck", "ResLayer", "ResNet", "create_model", "is_model",
           "list_models", "register_model"]
