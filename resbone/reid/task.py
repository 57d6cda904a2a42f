"""The re-id task on resbone's engine: the BNNeck baseline trained with ID + triplet (+ center) loss on P x K
batches, evaluated with CMC / mAP under the Market-1501 protocol.

Anchor: reid-strong-baseline's `tools/train.py` + `engine/trainer.py` (the model of `modeling/baseline.py`, the
`softmax_triplet` loss, RandomIdentitySampler batches, Adam with warm-up and steps, R1_mAP evaluation) as a
resbone.engine.task.Task, so a run gets the engine's resume, checkpoints, metrics.jsonl, EMA, AMP and torchrun.
The P x K batches come through the Task's `batch_sampler` (resbone.reid.sampler.PKSampler, sharded over the
processes); the center loss's centres are a submodule of the model (`center`) and learn in the engine's
optimizer. Proven by tests/reid/test_task.py (the losses and weights equal a hand-written torch loop on the
same batches; a resumed run equals an uninterrupted one).
"""
from __future__ import annotations

import torch
from torch import nn

from resbone.engine.config import check_weight
from resbone.engine.task import Task
from resbone.engine.trainer import Trainer
from resbone.reid.data import ReidImages, read_reid_folder, reid_transforms
from resbone.reid.evaluation import evaluate_sets, format_rank_metrics
from resbone.reid.losses import CenterLoss, ReidCriterion
from resbone.reid.model import ReidModel
from resbone.reid.sampler import PKSampler

__all__ = ["ReidTask", "ReidTrainer", "build_reid_model", "reid_criterion"]


def build_reid_model(cfg, num_classes: int) -> ReidModel:
    """ReidModel(num_classes, MODEL.NAME, ...) from the config: MODEL.WEIGHT (any dialect) or MODEL.PRETRAINED
    loaded into the backbone; with SOLVER.CENTER_LOSS_WEIGHT > 0 the centres as its `center` submodule."""
    check_weight(cfg.MODEL.WEIGHT)
    kwargs = {}
    if cfg.MODEL.BASE_CHANNELS:
        kwargs["base_channels"] = cfg.MODEL.BASE_CHANNELS
    if cfg.MODEL.PRETRAINED:
        kwargs["pretrained"] = True
    model = ReidModel(num_classes, cfg.MODEL.NAME, pooling=cfg.MODEL.POOLING, gem_p=cfg.MODEL.GEM_P,
                      last_stride=cfg.MODEL.LAST_STRIDE, bnneck=bool(cfg.MODEL.BNNECK),
                      checkpoint=cfg.MODEL.WEIGHT or None, **kwargs)
    if cfg.SOLVER.CENTER_LOSS_WEIGHT > 0:
        model.center = CenterLoss(num_classes, model.num_features)
    return model


def reid_criterion(cfg, model: ReidModel) -> ReidCriterion:
    """ID (label smoothing) + batch-hard triplet (SOLVER.MARGIN; 0: soft margin); the center term is the task's."""
    return ReidCriterion(model.num_classes, model.num_features, label_smoothing=cfg.SOLVER.LABEL_SMOOTHING,
                         margin=cfg.SOLVER.MARGIN or None)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


class ReidTask(Task):
    """Person re-identification: ReidOutput(logits, embedding) = model(images) on P x K batches, ID + triplet
    (+ weighted center) loss; evaluation ranks each test folder's gallery for its queries."""

    name = "reid"
    network_method = "forward"

    def __init__(self) -> None:
        self.cfg = None
        self.criterion: ReidCriterion | None = None

    def build_train_set(self, cfg) -> ReidImages:
        if not cfg.DATASETS.TRAIN:
            raise ValueError("DATASETS.TRAIN is empty; name a Market-1501-style folder (bounding_box_train, query, "
                             "bounding_box_test), e.g. one written by `resbone data reid --out datasets/reid`")
        self.cfg, self.criterion = cfg, None
        splits = read_reid_folder(cfg.DATASETS.TRAIN, cfg.DATASETS.NAMING)
        for root in cfg.DATASETS.TEST:  # refused before any training, not after it
            read_reid_folder(root, cfg.DATASETS.NAMING)
        transform = reid_transforms(tuple(cfg.INPUT.SIZE), train=True, padding=cfg.INPUT.PADDING,
                                    flip=cfg.INPUT.HFLIP_PROB, erasing=cfg.INPUT.RANDOM_ERASE)
        return ReidImages(splits["train"], transform, seed=cfg.SEED)

    def batch_sampler(self, cfg, train_set: ReidImages, batch_size: int) -> PKSampler:
        k = cfg.DATALOADER.NUM_INSTANCE
        if batch_size % k or batch_size // k < 2:
            raise ValueError(f"each process's batch ({batch_size} = SOLVER.IMS_PER_BATCH / processes) must be P x "
                             f"DATALOADER.NUM_INSTANCE ({k}) with P >= 2; change SOLVER.IMS_PER_BATCH")
        return PKSampler(train_set.labels, p=batch_size // k, k=k, seed=cfg.SEED)

    def collate(self, batch: list):
        images, labels, _, _ = torch.utils.data.default_collate(batch)
        return images, labels

    def build_model(self, cfg, train_set: ReidImages) -> nn.Module:
        return build_reid_model(cfg, len(train_set.class_names))

    def param_lr_factor(self, cfg, name: str) -> float:
        return cfg.SOLVER.CENTER_LR_FACTOR if name.startswith("center.") else 1.0

    def losses(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        if self.criterion is None:  # the model may come from the Trainer's model / model_fn, not build_model
            self.criterion = reid_criterion(self.cfg, _unwrap(model))
        output = model(images)
        embedding = output.embedding.float()
        losses = self.criterion(output.logits.float(), embedding, labels)
        weight = self.cfg.SOLVER.CENTER_LOSS_WEIGHT
        if weight > 0:
            center = getattr(_unwrap(model), "center", None)
            if center is None:
                raise ValueError("SOLVER.CENTER_LOSS_WEIGHT > 0 needs the model's centres (its `center` submodule, "
                                 "which resbone.reid.task.build_reid_model adds)")
            losses["loss_center"] = weight * center(embedding, labels)
        return losses

    def evaluate(self, cfg, model: nn.Module, device: torch.device, *, progress: bool = True) -> dict:
        return evaluate_sets(cfg, model, device, out_dir=cfg.OUTPUT_DIR, progress=progress)

    def format_metrics(self, metrics: dict) -> str:
        return format_rank_metrics(metrics)


class ReidTrainer(Trainer):
    """resbone.engine.trainer.Trainer with the ReidTask: `ReidTrainer(cfg).train()`."""

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, ReidTask(), **kwargs)
