"""The whole detector path trains: FCOS (R-18 body with few channels, FPN, head, losses) fitted on 4
shapes images reaches COCO AP50 > 0.9 on those images, and its loss falls. Real build_detector, real
dataset, real trainer and pycocotools evaluation; only the backbone is narrowed to keep it short."""
from __future__ import annotations

import json
import os

import pytest

from resbone.detection.config import load_cfg
from resbone.detection.detector import build_detector
from resbone.detection.task import DetectionTrainer as Trainer
from resbone.models.resnet import ResNet


def narrow_fcos(cfg):
    backbone = ResNet(18, num_classes=None, out_indices=(1, 2, 3), base_channels=16, norm_cfg=dict(type="BN"))
    return build_detector(cfg, backbone=backbone)


@pytest.mark.slow
def test_overfit_four_images(tmp_path):
    cfg = load_cfg(None, [
        "MODEL.DEVICE", "cpu", "MODEL.FCOS.NUM_CLASSES", "4", "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "64",
        "MODEL.FCOS.NUM_CONVS", "2", "MODEL.RETINANET.USE_C5", "False", "MODEL.FCOS.NORM_REG_TARGETS", "True",
        "MODEL.FCOS.CENTERNESS_ON_REG", "True", "MODEL.FCOS.CENTER_SAMPLING_RADIUS", "1.5",
        "MODEL.FCOS.IOU_LOSS_TYPE", "giou", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96", "DATALOADER.SIZE_DIVISIBILITY", "32",
        "DATALOADER.NUM_WORKERS", "0", "DATASETS.ROOT", str(tmp_path / "data"),
        "DATASETS.TRAIN", "('shapes_train',)", "DATASETS.TEST", "('shapes_train',)",
        "DATASETS.SHAPES.NUM_TRAIN", "4", "DATASETS.SHAPES.IMAGE_SIZE", "96", "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", "0.0",
        "SOLVER.IMS_PER_BATCH", "4", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "10", "SOLVER.MAX_ITER", "80",
        "SOLVER.STEPS", "(65,)", "SOLVER.WEIGHT_DECAY", "0.0", "SOLVER.CHECKPOINT_PERIOD", "1000",
        "SOLVER.LOG_PERIOD", "10", "SOLVER.PROGRESS_BAR", "False", "TEST.IMS_PER_BATCH", "4",
        "OUTPUT_DIR", str(tmp_path / "out")])
    result = Trainer(cfg, model_fn=narrow_fcos).train()
    with open(os.path.join(cfg.OUTPUT_DIR, "metrics.jsonl")) as handle:
        losses = [r["loss"] for r in map(json.loads, handle) if "loss" in r]
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]
    assert result["eval"]["shapes_train"]["AP50"] > 0.9, result["eval"]
