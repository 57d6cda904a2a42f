"""The FCOS detector on resbone backbones: `build_detector(cfg)` -> `FCOS`."""
from resbone.detection.detector import FCOS, build_detector

__all__ = ["FCOS", "build_detector"]
