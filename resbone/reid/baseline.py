"""The re-id baseline end to end without the engine: loaders, a training loop (ID + triplet loss), ranking.

Anchor: reid-strong-baseline's `tools/train.py` + `engine/trainer.py` (Adam, lr 3.5e-4, weight decay 5e-4,
linear warm-up from 0.1x, steps x0.1; the center loss's centres under their own SGD, lr 0.5, with their
gradient divided by the loss weight) and `engine/inference.py` (features of query and gallery, distance,
CMC and mAP). A plain loop, so the parts are proven together before the task joins the engine.
Reference test: tests/reid/test_baseline.py (a tiny ResNet-18 learns the generated set's held-out identities).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from resbone.reid.data import ReidImages, read_reid_folder, reid_transforms
from resbone.reid.losses import ReidCriterion
from resbone.reid.metrics import distance_matrix, evaluate_rank, rank_summary
from resbone.reid.model import ReidModel
from resbone.reid.rerank import re_ranking
from resbone.reid.sampler import PKSampler

__all__ = ["evaluate", "extract_features", "reid_loaders", "train_epochs"]


def reid_loaders(root: str | os.PathLike, *, naming: str = "market1501", size: Sequence[int] = (256, 128),
                 p: int = 16, k: int = 4, batch_size: int = 128, workers: int = 0, seed: int = 0,
                 erasing: float = 0.5) -> dict[str, Any]:
    """{'train', 'query', 'gallery'} DataLoaders of a Market-1501-style folder, and 'num_classes'."""
    splits = read_reid_folder(root, naming)
    train = ReidImages(splits["train"], reid_transforms(size, train=True, erasing=erasing))
    loaders: dict[str, Any] = {"train": DataLoader(train, batch_sampler=PKSampler(train.labels, p=p, k=k, seed=seed),
                                                   num_workers=workers)}
    for split in ("query", "gallery"):
        loaders[split] = DataLoader(ReidImages(splits[split], reid_transforms(size, train=False)),
                                    batch_size=batch_size, num_workers=workers)
    loaders["num_classes"] = len({item.label for item in splits["train"]})
    return loaders


def _lr_factor(epoch: int, *, warmup_epochs: int, milestones: Sequence[int], gamma: float = 0.1) -> float:
    warmup = 0.1 + 0.9 * epoch / warmup_epochs if epoch < warmup_epochs else 1.0
    return warmup * gamma ** sum(epoch >= m for m in milestones)


def train_epochs(model: ReidModel, loader: DataLoader, *, epochs: int, criterion: ReidCriterion | None = None,
                 lr: float = 3.5e-4, weight_decay: float = 5e-4, warmup_epochs: int = 0,
                 milestones: Sequence[int] = (), device: str | torch.device = "cpu") -> list[dict[str, float]]:
    """Train `model` for `epochs` over `loader` (PK batches of (images, labels, ...)); returns each epoch's mean
    losses. `criterion` defaults to ReidCriterion(model.num_classes, model.num_features)."""
    criterion = criterion or ReidCriterion(model.num_classes, model.num_features)
    model.to(device).train()
    criterion.to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    centers = torch.optim.SGD(criterion.center.parameters(), lr=0.5) if criterion.center is not None else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: _lr_factor(
        e, warmup_epochs=warmup_epochs, milestones=milestones))
    history = []
    for epoch in range(epochs):
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        for images, labels, *_ in loader:
            images, labels = images.to(device), labels.to(device)
            output = model(images)
            losses = criterion(output.logits, output.embedding, labels)
            optimizer.zero_grad(set_to_none=True)
            if centers is not None:
                centers.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            if centers is not None:  # the centres learn at their own rate, whatever the loss weight
                for param in criterion.center.parameters():
                    param.grad.mul_(1.0 / criterion.center_weight)
                centers.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item()
        scheduler.step()
        history.append({name: total / max(len(loader), 1) for name, total in sums.items()})
    return history


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader: DataLoader, *,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(features (N, C), pids, camids) of every image of `loader`, in eval mode (the embedding after the BN)."""
    model.to(device).eval()
    features, pids, camids = [], [], []
    for images, _, pid, camid in loader:
        features.append(model(images.to(device)).float().cpu())
        pids.append(pid)
        camids.append(camid)
    return torch.cat(features), torch.cat(pids).numpy(), torch.cat(camids).numpy()


def evaluate(model: torch.nn.Module, query_loader: DataLoader, gallery_loader: DataLoader, *,
             metric: str = "euclidean", rerank: bool = False, device: str | torch.device = "cpu") -> dict[str, Any]:
    """mAP and rank-1/5/10 (percent) of `model` under the Market-1501 protocol; 'distmat' holds the ranking's
    distances (re-ranked with k1=20, k2=6, lambda 0.3 when rerank=True)."""
    q_features, q_pids, q_camids = extract_features(model, query_loader, device=device)
    g_features, g_pids, g_camids = extract_features(model, gallery_loader, device=device)
    distmat = distance_matrix(q_features, g_features, metric).numpy()
    if rerank:
        distmat = re_ranking(distmat, distance_matrix(q_features, q_features, metric).numpy(),
                             distance_matrix(g_features, g_features, metric).numpy())
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    return {**rank_summary(cmc, mean_ap), "distmat": distmat}
