"""Inference over a data set and its COCO evaluation, on one process or gathered from all of torchrun's.

Anchor: FCOS `engine/inference.py` (`inference`: predictions per image id, gathered on every rank, then
COCO evaluation) over pycocotools (resbone.detection.evaluation). Proven by tests/engine/test_trainer.py
(eval_results.json) and tests/engine/test_distributed.py (2 processes report what 1 process reports).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from resbone.detection.data import collate
from resbone.detection.data.build import build_dataset
from resbone.detection.evaluation import COCO_METRICS, evaluate_coco
from resbone.engine import distributed as comm
from resbone.engine.data import build_test_loader, per_rank
from resbone.engine.runtime import logger, progress_bar, select_device

__all__ = ["inference", "evaluate"]


@torch.no_grad()
def inference(model: nn.Module, loader, device: torch.device, *, progress: bool = False) -> dict:
    """{image_id: prediction on the CPU} for the whole set, gathered from every rank."""
    was_training = model.training
    model.eval()
    predictions = {}
    try:
        for images, targets in progress_bar(loader, desc="inference", enabled=progress and comm.is_main_process()):
            outputs = model([im.to(device) for im in images])
            for target, output in zip(targets, outputs):
                predictions[target["image_id"]] = {k: v.detach().cpu() for k, v in output.items()}
    finally:
        model.train(was_training)
    merged = {}
    for part in comm.all_gather_object(predictions):
        merged.update(part)
    return merged


def evaluate(cfg, model: nn.Module, device: torch.device | None = None, *, progress: bool = True
             ) -> dict[str, dict[str, float]]:
    """COCO AP of `model` on every set of DATASETS.TEST: {name: {AP, AP50, ...}} (on every rank)."""
    device = device or select_device(cfg)
    results = {}
    batch = per_rank(cfg.TEST.IMS_PER_BATCH, "TEST.IMS_PER_BATCH")
    for name in cfg.DATASETS.TEST:
        dataset = build_dataset(cfg, name, is_train=False)
        loader = build_test_loader(dataset, batch_size=batch, collate_fn=collate,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)
        start = time.perf_counter()
        predictions = inference(model, loader, device, progress=progress)
        metrics = evaluate_coco(dataset.coco, predictions, dataset.label_to_cat_id)
        results[name] = metrics
        logger.info("%s: %d images in %.1f s; %s", name, len(dataset), time.perf_counter() - start,
                    "  ".join(f"{k} {metrics[k]:.3f}" for k in COCO_METRICS))
    return results
