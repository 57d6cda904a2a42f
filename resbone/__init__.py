"""resbone: one PyTorch implementation of the ResNet family, speaking every ecosystem's dialect."""
import os

# Idle OpenMP threads sleep instead of spinning; libgomp reads this when torch loads it, so it applies when
# resbone is imported first (the `resbone` command). With one other busy process on a 2-core machine an R-18
# detector's step went from 0.96 s (spinning) to 0.50 s, at about the same speed alone; a model of small ops
# pays for the wake-ups, which is why `make demo` runs one thread (README: threads). Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from resbone.builders import build_backbone
from resbone.convert import convert_state_dict, detect_dialect, load_checkpoint
from resbone.detection.backbone import build_fcos_backbone
from resbone.factory import create_model
from resbone.models.mobilenetv2 import MobileNetV2
from resbone.models.registry import is_model, list_models, register_model
from resbone.models.resnet import BasicBlock, Bottleneck, ResLayer, ResNet
from resbone.weights import get_weights, list_pretrained

__version__ = "0.1.0"
__all__ = ["BasicBlock", "Bottleneck", "MobileNetV2", "ResLayer", "ResNet", "build_backbone",
           "build_fcos_backbone", "convert_state_dict", "create_model", "detect_dialect", "get_weights",
           "is_model", "list_models", "list_pretrained", "load_checkpoint", "register_model"]
