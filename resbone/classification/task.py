"""The classification task on resbone's engine: a registered model fitted to the data's classes, the
reference recipe's data pipeline and loss, Acc@1 / Acc@5 with per-class accuracy and a confusion matrix.

Anchor: torchvision's `references/classification/train.py` (ImageFolder + presets, collate with MixUp /
CutMix, nn.CrossEntropyLoss(label_smoothing), evaluate: Acc@1 / Acc@5) and timm's `train.py`
(`--pretrained --num-classes N`: the classifier replaced, the rest loaded) as a resbone.engine.task.Task.
Proven by tests/classification/test_task.py (the loop equals a hand-written torch loop; fine-tuning from
a checkpoint file; resume).
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from resbone.classification.data.folders import check_same_classes, open_labelled_images
from resbone.classification.evaluation import classification_metrics, plot_confusion_matrix, predict_logits
from resbone.classification.transforms import build_batch_mix, build_eval_transform, build_train_transform
from resbone.engine import distributed as comm
from resbone.engine.checkpoint import load_weights
from resbone.engine.config import check_weight
from resbone.engine.data import per_rank
from resbone.engine.task import Task
from resbone.engine.trainer import Trainer
from resbone.factory import create_model

__all__ = ["ClassificationTask", "ClassificationTrainer", "build_classifier", "evaluate_sets", "model_pretrained_cfg"]

logger = logging.getLogger("resbone")
_PRETRAINED_CFGS: dict[str, dict] = {}


def model_pretrained_cfg(name: str) -> dict:
    """MODEL.NAME's pretrained_cfg (mean, std, input size, crop_pct, classifier), read from a throwaway build."""
    if name not in _PRETRAINED_CFGS:
        _PRETRAINED_CFGS[name] = dict(create_model(name, num_classes=1).pretrained_cfg)
    return _PRETRAINED_CFGS[name]


def build_classifier(cfg, num_classes: int) -> nn.Module:
    """create_model(MODEL.NAME, num_classes, frozen_stages) with MODEL.PRETRAINED's weights or MODEL.WEIGHT (any
    dialect; a classifier of another size is left as initialised, with a warning naming it)."""
    check_weight(cfg.MODEL.WEIGHT)
    kwargs = dict(num_classes=num_classes)
    if cfg.MODEL.FROZEN_STAGES >= 0:
        kwargs["frozen_stages"] = cfg.MODEL.FROZEN_STAGES
    if cfg.MODEL.PRETRAINED:  # the model's published weights (resbone.weights), its classifier re-initialised
        kwargs["pretrained"] = True
    model = create_model(cfg.MODEL.NAME, **kwargs)
    if cfg.MODEL.WEIGHT:
        load_weights(model, cfg.MODEL.WEIGHT)
    return model


def _classifier_prefix(model: nn.Module) -> str:
    return getattr(model, "pretrained_cfg", {}).get("classifier", "fc") + "."


def evaluate_sets(cfg, model: nn.Module, device: torch.device, class_names: list[str], *, out_dir: str | None,
                  progress: bool = True) -> dict[str, dict]:
    """{set: metrics} of `model` on every DATASETS.TEST set; with `out_dir` (main process) a confusion PNG each."""
    transform = build_eval_transform(cfg, model_pretrained_cfg(cfg.MODEL.NAME))
    results = {}
    for source in cfg.DATASETS.TEST:
        dataset = open_labelled_images(source, what="DATASETS.TEST", transform=transform)
        if dataset.classes != list(class_names):
            check_same_classes(_named(class_names), dataset)
        logits, target = predict_logits(model, dataset, device, batch_size=per_rank(cfg.TEST.IMS_PER_BATCH,
                                        "TEST.IMS_PER_BATCH"), num_workers=cfg.DATALOADER.NUM_WORKERS,
                                        progress=progress)
        metrics = classification_metrics(logits, target, class_names)
        if out_dir and comm.is_main_process():
            name = os.path.basename(os.path.normpath(source)) or "test"
            metrics["confusion_png"] = plot_confusion_matrix(
                metrics["confusion"], class_names, os.path.join(out_dir, f"confusion_{name}.png"),
                title=f"{source}: Acc@1 {metrics['Acc@1']:.2f}")
        results[source] = metrics
        logger.info("%s: %d images; %s", source, len(dataset), _format(metrics))
    return results


class _named:
    """The training classes in check_same_classes's terms, when only their names are known."""

    def __init__(self, classes: list[str]) -> None:
        self.classes, self.source = list(classes), "the model's training set"


def _format(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("Acc@"))


class ClassificationTask(Task):
    """Image classification: logits = model(images), cross-entropy with label smoothing (soft labels after
    MixUp / CutMix)."""

    name = "classification"
    network_method = "forward"

    def __init__(self) -> None:
        self.class_names: list[str] = []
        self.label_smoothing = 0.0
        self._mix = None
        self._classifier = "fc."

    def build_train_set(self, cfg):
        transform = build_train_transform(cfg, model_pretrained_cfg(cfg.MODEL.NAME))
        # augmentations drawn from (SEED, epoch, index): an exact resume with any DATALOADER.NUM_WORKERS
        dataset = open_labelled_images(cfg.DATASETS.TRAIN, what="DATASETS.TRAIN", transform=transform, seed=cfg.SEED)
        for source in cfg.DATASETS.TEST:  # refused before any training, not after it
            check_same_classes(dataset, open_labelled_images(source, what="DATASETS.TEST"))
        self.class_names = dataset.classes
        self.label_smoothing = float(cfg.SOLVER.LABEL_SMOOTHING)
        self._mix = build_batch_mix(cfg, len(dataset.classes))
        return dataset

    def to_device(self, batch, device: torch.device):
        images, labels = super().to_device(batch, device)
        # torchvision's reference mixes in the collate, i.e. in a loader worker whose RNG a resume does not
        # restore; here it draws from the main process's RNG, which checkpoints hold
        return (images, labels) if self._mix is None else self._mix(images, labels)

    def build_model(self, cfg, train_set) -> nn.Module:
        classes = len(train_set.classes)
        if cfg.MODEL.NUM_CLASSES and cfg.MODEL.NUM_CLASSES != classes:
            raise ValueError(f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but DATASETS.TRAIN has {classes} classes "
                             f"({', '.join(train_set.classes[:8])}{' ...' if classes > 8 else ''}); set it to "
                             f"{classes} or 0 (from the data)")
        model = build_classifier(cfg, classes)
        self._classifier = _classifier_prefix(model)
        return model

    def param_lr_factor(self, cfg, name: str) -> float:
        return 1.0 if name.startswith(self._classifier) else cfg.SOLVER.BACKBONE_LR_FACTOR

    def losses(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        images, target = batch
        logits = model(images)
        return {"loss_cls": F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)}

    def evaluate(self, cfg, model: nn.Module, device: torch.device, *, progress: bool = True) -> dict:
        return evaluate_sets(cfg, model, device, self.class_names, out_dir=cfg.OUTPUT_DIR, progress=progress)

    def format_metrics(self, metrics: dict) -> str:
        return _format(metrics)


class ClassificationTrainer(Trainer):
    """resbone.engine.trainer.Trainer with the ClassificationTask: `ClassificationTrainer(cfg).train()`."""

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, ClassificationTask(), **kwargs)
