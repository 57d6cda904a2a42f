"""Checkpoint dialects <-> resbone, read and written safely.

    load_checkpoint(model, path_or_state_dict, dialect='auto', strict=True, allow_nonfinite=False)  -> LoadReport
    convert_state_dict(state_dict, src='auto', dst='resbone', **options)     -> state dict
    detect_dialect(state_dict)                                               -> dialect name
    load_state_dict_file(path) / save_state_dict_file(state_dict, path)      (safe / atomic)

Dialects: resbone, torchvision, timm, mmdet, mmpretrain, detectron2, maskrcnn (maskrcnn-benchmark and
FCOS), caffe2, pretrainedmodels (Cadene's SENet), torchreid, fastreid (also IBN-Net's files). Each module
(torchvision.py, timm.py, reid.py, ...) documents the names it maps; dialects.py holds the table.
"""
from resbone.convert.detect import detect_dialect
from resbone.convert.dialects import DIALECTS, Dialect, resolve_dialect
from resbone.convert.io import load_state_dict_file, save_state_dict_file, unwrap_state_dict
from resbone.convert.load import LoadReport, describe_model, load_checkpoint
from resbone.convert.torchvision import fcos_from_torchvision, fcos_to_torchvision
from resbone.convert.translate import convert_state_dict

__all__ = ["DIALECTS", "Dialect", "LoadReport", "convert_state_dict", "describe_model", "detect_dialect",
           "fcos_from_torchvision", "fcos_to_torchvision", "load_checkpoint", "load_state_dict_file",
           "resolve_dialect", "save_state_dict_file", "unwrap_state_dict"]
