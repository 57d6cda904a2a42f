"""Re-id evaluation on the engine: every rank embeds its share of the query and gallery images, the features
are gathered in the set's order, then CMC rank-1/5/10 and mAP under the Market-1501 protocol (optionally
re-ranked) and the ranked-list picture.

Anchor: reid-strong-baseline's `engine/inference.py` (R1_mAP: features after the BNNeck, distances, CMC and
mAP, re-ranking as an option) with detectron2's `inference_on_dataset` sharding over processes.
Proven by tests/reid/test_task.py (the task's figures equal resbone.reid.baseline.evaluate's on the same model,
whose parts are tested against torchreid) and tests/reid/test_cli.py.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch import nn

from resbone.engine import distributed as comm
from resbone.engine.data import build_test_loader, per_rank
from resbone.engine.runtime import progress_bar
from resbone.reid.data import ReidImages, read_reid_folder, reid_transforms
from resbone.reid.metrics import distance_matrix, evaluate_rank, rank_summary
from resbone.reid.rerank import re_ranking
from resbone.reid.visualize import save_ranked_lists

__all__ = ["evaluate_sets", "format_rank_metrics", "gather_features"]

logger = logging.getLogger("resbone")


@torch.no_grad()
def gather_features(model: nn.Module, dataset, device: torch.device, *, batch_size: int, num_workers: int = 0,
                    progress: bool = False) -> torch.Tensor:
    """(N, C) eval-mode embeddings of `dataset`'s images (items: image first), gathered from every rank in
    the set's order; the model's mode is restored."""
    loader = build_test_loader(dataset, batch_size=batch_size, collate_fn=torch.utils.data.default_collate,
                               num_workers=num_workers)
    was_training = model.training
    model.eval()
    try:
        features = [model(batch[0].to(device)).float().cpu()
                    for batch in progress_bar(loader, desc="embed", enabled=progress and comm.is_main_process())]
    finally:
        model.train(was_training)
    parts = comm.all_gather_object(torch.cat(features) if features else None)
    width = next(p.shape[1] for p in parts if p is not None)
    out = torch.empty(len(dataset), width)
    for rank, part in enumerate(parts):  # rank r embedded the indices r::world
        if part is not None:
            out[rank::len(parts)] = part
    return out


def format_rank_metrics(metrics: dict) -> str:
    return "  ".join(f"{key} {metrics[key]:.1f}" for key in ("rank-1", "rank-5", "rank-10", "mAP") if key in metrics)


def evaluate_sets(cfg, model: nn.Module, device: torch.device, *, out_dir: str | None,
                  progress: bool = True) -> dict[str, dict]:
    """{folder: {'mAP', 'rank-1', 'rank-5', 'rank-10' (percent), 'num_query', 'num_gallery'}} of `model` on
    each DATASETS.TEST folder's query and gallery; with `out_dir` (main process) 'ranked_png' too."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the re-id folders to evaluate, e.g. "
                         "DATASETS.TEST \"('datasets/reid',)\"")
    transform = reid_transforms(tuple(cfg.INPUT.SIZE), train=False)
    batch_size = per_rank(cfg.TEST.IMS_PER_BATCH, "TEST.IMS_PER_BATCH")
    results = {}
    for root in cfg.DATASETS.TEST:
        splits = read_reid_folder(root, cfg.DATASETS.NAMING)
        query, gallery = splits["query"], splits["gallery"]
        q_features, g_features = (gather_features(model, ReidImages(items, transform), device, batch_size=batch_size,
                                                  num_workers=cfg.DATALOADER.NUM_WORKERS, progress=progress)
                                  for items in (query, gallery))
        distmat = distance_matrix(q_features, g_features, cfg.TEST.METRIC).numpy()
        if cfg.TEST.RERANK:
            distmat = re_ranking(distmat, distance_matrix(q_features, q_features, cfg.TEST.METRIC).numpy(),
                                 distance_matrix(g_features, g_features, cfg.TEST.METRIC).numpy())
        cmc, mean_ap = evaluate_rank(distmat, [q.pid for q in query], [g.pid for g in gallery],
                                     [q.camid for q in query], [g.camid for g in gallery])
        metrics: dict = {**rank_summary(cmc, mean_ap), "num_query": len(query), "num_gallery": len(gallery)}
        if out_dir and cfg.TEST.RANKED_QUERIES and comm.is_main_process():
            # queries spread over the set (its first ones are a few identities seen by two cameras)
            shown = np.unique(np.linspace(0, len(query) - 1, min(cfg.TEST.RANKED_QUERIES, len(query))).round()
                              .astype(int))
            name = os.path.basename(os.path.normpath(root)) or "test"
            os.makedirs(out_dir, exist_ok=True)
            metrics["ranked_png"] = save_ranked_lists(os.path.join(out_dir, f"ranked_{name}.png"), distmat[shown],
                                                      [query[i] for i in shown], gallery, topk=min(10, len(gallery)))
        results[root] = metrics
        logger.info("%s: %d queries, %d gallery images; %s", root, len(query), len(gallery),
                    format_rank_metrics(metrics))
    return results
