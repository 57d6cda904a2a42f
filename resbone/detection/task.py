"""The detection task on resbone's engine: FCOS from the config, COCO-json data, its losses, COCO AP.

Anchor: FCOS `tools/train_net.py` (build_detection_model, make_data_loader, do_train's
`loss_dict = model(images, targets)`, inference + COCO evaluation) as the parts of a
resbone.engine.task.Task. Proven by tests/engine/test_trainer.py, tests/detection/test_overfit.py and
tests/cli/test_engine_cli.py.
"""
from __future__ import annotations

import torch
from torch import nn

from resbone.deploy.inference import NETWORK_METHOD
from resbone.detection.data import collate
from resbone.detection.data.build import build_dataset
from resbone.detection.evaluation import COCO_METRICS
from resbone.engine.checkpoint import load_weights
from resbone.engine.config import check_weight
from resbone.engine.task import Task
from resbone.engine.trainer import Trainer

__all__ = ["DetectionTask", "DetectionTrainer", "build_detector_with_weight"]


def build_detector_with_weight(cfg) -> nn.Module:
    """build_detector(cfg), then MODEL.WEIGHT (a local file) if set."""
    from resbone.detection.detector import build_detector

    check_weight(cfg.MODEL.WEIGHT)
    model = build_detector(cfg)
    if cfg.MODEL.WEIGHT:
        load_weights(model, cfg.MODEL.WEIGHT)
    return model


class DetectionTask(Task):
    """FCOS: `model(images, targets)` returns its losses in train mode; the compiled network is forward_network."""

    name = "detection"
    network_method = NETWORK_METHOD

    def build_train_set(self, cfg):
        return build_dataset(cfg, cfg.DATASETS.TRAIN, is_train=True)

    def collate(self, batch: list):
        return collate(batch)

    def build_model(self, cfg, train_set) -> nn.Module:
        classes = len(train_set.class_names)
        if cfg.MODEL.FCOS.NUM_CLASSES != classes + 1:
            raise ValueError(f"MODEL.FCOS.NUM_CLASSES is {cfg.MODEL.FCOS.NUM_CLASSES} but DATASETS.TRAIN has "
                             f"{classes} categories; FCOS counts the background: set MODEL.FCOS.NUM_CLASSES "
                             f"{classes + 1}")
        return build_detector_with_weight(cfg)

    def to_device(self, batch, device: torch.device):
        images, targets = batch
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        return images, targets

    def losses(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        images, targets = batch
        return model(images, targets)

    def evaluate(self, cfg, model: nn.Module, device: torch.device, *, progress: bool = True) -> dict:
        from resbone.detection.inference import evaluate

        return evaluate(cfg, model, device, progress=progress) if cfg.DATASETS.TEST else {}

    def format_metrics(self, metrics: dict[str, float]) -> str:
        return "  ".join(f"{k} {metrics[k]:.3f}" for k in COCO_METRICS)


class DetectionTrainer(Trainer):
    """resbone.engine.trainer.Trainer with the DetectionTask: `DetectionTrainer(cfg, model_fn=...).train()`."""

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, DetectionTask(), **kwargs)
