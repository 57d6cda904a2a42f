"""A small real FCOS detector for the deploy tests: R-18-FPN body (FrozenBN with random statistics, so
that folding them matters), 64-channel pyramid (the demo's), one conv per tower, 96 px shapes images, and a head biased
so that a few hundred candidates pass the score threshold and NMS has work to do; and the comparison of
two detectors' detections (PyTorch tensors or numpy arrays)."""
from __future__ import annotations

import torch

from resbone.detection.defaults import detector_cfg
from resbone.detection.detector import FCOS, build_detector
from tests.helpers import randomize_norms

SIZE = 96  # the shapes demo's image size (a multiple of SIZE_DIVISIBILITY 32)


def tiny_fcos(seed: int = 0, **fcos) -> FCOS:
    torch.manual_seed(seed)
    cfg = detector_cfg({
        "INPUT": {"MIN_SIZE_TRAIN": (SIZE,), "MAX_SIZE_TRAIN": SIZE, "MIN_SIZE_TEST": SIZE, "MAX_SIZE_TEST": SIZE},
        "DATALOADER": {"SIZE_DIVISIBILITY": 32},
        "MODEL": {"BACKBONE": {"CONV_BODY": "R-18-FPN-RETINANET", "FREEZE_CONV_BODY_AT": 0},
                  "RESNETS": {"BACKBONE_OUT_CHANNELS": 64, "RES2_OUT_CHANNELS": 64},
                  "RETINANET": {"USE_C5": False},
                  "FCOS": {"NUM_CLASSES": 4, "NUM_CONVS": 1, "NORM_REG_TARGETS": True, "CENTERNESS_ON_REG": True,
                           **fcos}}})
    model = randomize_norms(build_detector(cfg), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.cls_logits.weight.normal_(0.0, 0.05, generator=g)
        model.head.cls_logits.bias.copy_(torch.tensor([-1.5, -1.0, -2.0]))
        model.head.bbox_pred.weight.normal_(0.0, 0.05, generator=g)
        model.head.bbox_pred.bias.fill_(1.0)
    return model.eval()


def assert_same_detections(got: list[dict], expected: list[dict], *, box_tol: float = 1e-3,
                           score_tol: float = 1e-4) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(e["boxes"]) > 10 and len(g["boxes"]) == len(e["boxes"])
        assert torch.equal(torch.as_tensor(g["labels"]), e["labels"])
        assert (torch.as_tensor(g["boxes"]) - e["boxes"]).abs().max() < box_tol
        assert (torch.as_tensor(g["scores"]) - e["scores"]).abs().max() < score_tol
