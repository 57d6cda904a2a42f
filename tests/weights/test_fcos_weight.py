"""FCOS's shipped config runs with its MODEL.WEIGHT unchanged (catalog://ImageNetPretrained/MSRA/R-50): the
name resolves as maskrcnn-benchmark's ModelCatalog does, the Caffe2 pickle is fetched (from 127.0.0.1 here) into
torch hub's cache and its tensors land in the detector's backbone, read by the restricted unpickler."""
from __future__ import annotations

import torch

from resbone.convert import convert_state_dict
from resbone.convert.io import save_state_dict_file
from resbone.detection.config import load_cfg
from resbone.detection.task import build_detector_with_weight
from resbone.factory import create_model

CONFIG = "resbone/configs/fcos/fcos_R_50_FPN_1x.yaml"
R50 = "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl"


def test_fcos_config_weight_resolves_and_loads(served, tmp_path):
    cfg = load_cfg(CONFIG)
    assert cfg.MODEL.WEIGHT == "catalog://ImageNetPretrained/MSRA/R-50"
    g = torch.Generator().manual_seed(0)
    native = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v)
              for k, v in create_model("resnet50", style="caffe", num_classes=None).state_dict().items()
              if "running" not in k and "num_batches" not in k}  # Caffe2 BN is a plain affine
    pickle = save_state_dict_file(convert_state_dict(native, "resbone", "caffe2"), tmp_path / "R-50.pkl",
                                  pickle_key="blobs")
    served.add(R50, pickle.read_bytes())
    model = build_detector_with_weight(cfg)
    state = model.state_dict()
    for key in ("conv1.weight", "layer2.0.conv1.weight", "layer4.2.conv3.weight"):
        assert torch.equal(state[f"backbone.{key}"], native[key]), key
    assert len(served.requests) == 1
