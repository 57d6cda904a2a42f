"""Ranking metrics as re-id papers report them: distances, CMC (rank-k) and mAP under the Market-1501 protocol.

Anchors: torchreid's `metrics.compute_distance_matrix` (euclidean = SQUARED euclidean, cosine = 1 - cos) and
`metrics.evaluate_rank` (`eval_market1501`): for each query, the gallery images of its identity taken by its
camera are excluded; CMC is 1 from the first correct match on; AP is the mean precision at each correct match.
The official Market-1501 code also drops the junk images (identity -1), which torchreid's reader drops before
evaluating: `evaluate_rank` here excludes them itself. Distractors (identity 0 in Market-1501) are ordinary
negatives. One vectorised pass over the sorted distance matrix instead of torchreid's per-query loop.
Reference test: tests/reid/test_metrics.py (torchreid's evaluate_rank, python path, on random matrices with
junk and same-camera images).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from resbone.models._checks import check_choice, check_int

__all__ = ["JUNK", "distance_matrix", "evaluate_rank", "rank_summary"]

_CHUNK = 256
JUNK = -1  # Market-1501's identity for junk boxes (too little of a person): neither right nor wrong
METRICS = ("euclidean", "cosine")


def distance_matrix(query: torch.Tensor, gallery: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """(Q, G) distances between the rows of `query` (Q, C) and `gallery` (G, C): 'euclidean' is the squared
    euclidean distance, 'cosine' 1 - cosine similarity (torchreid's compute_distance_matrix)."""
    check_choice("metric", metric, METRICS)
    if query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query and gallery must be (N, C) feature matrices of the same C, got "
                         f"{tuple(query.shape)} and {tuple(gallery.shape)}")
    if metric == "cosine":
        return 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).t()
    return (query.pow(2).sum(1, keepdim=True) + gallery.pow(2).sum(1)[None, :]).addmm(query, gallery.t(),
                                                                                       beta=1, alpha=-2)


def _as_array(name: str, values: Sequence[int] | np.ndarray | torch.Tensor, length: int) -> np.ndarray:
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if array.shape != (length,):
        raise ValueError(f"{name} must hold one value per row/column of distmat ({length}), got shape {array.shape}")
    return array


def evaluate_rank(distmat: np.ndarray | torch.Tensor, q_pids: Sequence[int], g_pids: Sequence[int],
                  q_camids: Sequence[int], g_camids: Sequence[int], *, max_rank: int = 50,
                  skip_unmatched: bool = False) -> tuple[np.ndarray, float]:
    """CMC (float32 array of max_rank values, rank-1 first) and mAP of `distmat` (Q, G), torchreid's return.

    A query whose gallery holds no image of its identity from another camera cannot be scored: that is an
    error (the data set is broken) unless skip_unmatched=True, which leaves it out as torchreid does."""
    distmat = np.asarray(distmat.detach().cpu() if isinstance(distmat, torch.Tensor) else distmat)
    if distmat.ndim != 2 or 0 in distmat.shape:
        raise ValueError(f"distmat must be a non-empty (num_query, num_gallery) matrix, got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    q_pids, q_camids = _as_array("q_pids", q_pids, num_q), _as_array("q_camids", q_camids, num_q)
    g_pids, g_camids = _as_array("g_pids", g_pids, num_g), _as_array("g_camids", g_camids, num_g)
    max_rank = min(check_int("max_rank", max_rank), num_g)
    # a few hundred queries at a time: Market-1501's 3368 x 15913 matrix would need several GB at once
    scored = [_score(distmat[i:i + _CHUNK], q_pids[i:i + _CHUNK], q_camids[i:i + _CHUNK], g_pids, g_camids)
              for i in range(0, num_q, _CHUNK)]
    first_hit, average_precision = (np.concatenate(parts) for parts in zip(*scored))
    valid = first_hit > 0
    if not valid.all() and not skip_unmatched:
        missing = sorted({int(p) for p in q_pids[~valid]})
        raise ValueError(f"{int((~valid).sum())} queries have no gallery image of their identity from another "
                         f"camera (identities {missing[:10]}{' ...' if len(missing) > 10 else ''}); every query "
                         f"identity must appear in the gallery (skip_unmatched=True leaves those queries out)")
    if not valid.any():
        raise ValueError("no query has a gallery image of its identity from another camera: nothing to evaluate")
    cmc = (first_hit[valid, None] <= np.arange(1, max_rank + 1)[None, :]).astype(np.float32).mean(0)
    return cmc, float(average_precision[valid].mean())


def _score(distmat: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, g_pids: np.ndarray,
           g_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's rank of its first correct match among the kept gallery images (0: none) and its AP."""
    order = np.argsort(distmat, axis=1, kind="stable")
    ranked_pids, ranked_cams = g_pids[order], g_camids[order]
    same_identity = ranked_pids == q_pids[:, None]
    keep = ~(same_identity & (ranked_cams == q_camids[:, None])) & (ranked_pids != JUNK)
    matches = same_identity & keep
    position = np.cumsum(keep, axis=1, dtype=np.int32)  # 1-based rank among the kept gallery images
    first_hit = np.where(matches.any(1), np.where(matches, position, np.iinfo(np.int32).max).min(1), 0)
    hits = matches.sum(1)
    precision = np.cumsum(matches, axis=1, dtype=np.int32) / np.maximum(position, 1)
    return first_hit, (precision * matches).sum(1) / np.maximum(hits, 1)


def rank_summary(cmc: np.ndarray, mean_ap: float, ranks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """{'mAP': ..., 'rank-1': ..., 'rank-5': ..., 'rank-10': ...} in percent, as papers print them."""
    summary = {"mAP": 100.0 * mean_ap}
    summary.update({f"rank-{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in ranks})
    return summary
