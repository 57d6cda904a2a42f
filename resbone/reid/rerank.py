"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017): a query-gallery distance blended with the Jaccard distance of the two images' k-reciprocal sets.

Anchor: the authors' code as torchreid (`utils.rerank.re_ranking`) and fast-reid (`evaluation.rerank`) ship
it: the input distances are squared, each column divided by its maximum; the k1-reciprocal set of an image is
expanded by the (k1/2)-reciprocal sets of its members that overlap it by more than 2/3; the Gaussian-weighted
sets are averaged over the k2 nearest neighbours (local query expansion); the result is
(1 - lambda) * Jaccard + lambda * original. The Jaccard sums here visit only the columns a query's set uses
(not every pair). Reference test: tests/reid/test_rerank.py (torchreid's and fast-reid's re_ranking on the
same random matrices).
"""
from __future__ import annotations

import numpy as np
import torch

from resbone.models._checks import check_int

__all__ = ["re_ranking"]


def _numpy(name: str, matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    array = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D distance matrix, got shape {array.shape}")
    return array


def _k_reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """The members of i's k nearest neighbours that have i among their own k nearest (i itself included)."""
    forward = initial_rank[i, :k + 1]
    return forward[(initial_rank[forward, :k + 1] == i).any(1)]


def _encode(original: np.ndarray, initial_rank: np.ndarray, k1: int) -> np.ndarray:
    """V: each row the Gaussian weights exp(-d) of the image's expanded k-reciprocal set, summing to one."""
    encoding = np.zeros_like(original, dtype=np.float32)
    half = int(np.around(k1 / 2.0))
    for i in range(len(original)):
        reciprocal = _k_reciprocal(initial_rank, i, k1)
        expansion = [reciprocal]
        for candidate in reciprocal:
            theirs = _k_reciprocal(initial_rank, candidate, half)
            if len(np.intersect1d(theirs, reciprocal)) > 2.0 / 3 * len(theirs):
                expansion.append(theirs)
        members = np.unique(np.concatenate(expansion))
        weight = np.exp(-original[i, members])
        encoding[i, members] = weight / weight.sum()
    return encoding


def re_ranking(q_g_dist: np.ndarray | torch.Tensor, q_q_dist: np.ndarray | torch.Tensor,
               g_g_dist: np.ndarray | torch.Tensor, *, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """The re-ranked (Q, G) distance (float32), from the query-gallery, query-query and gallery-gallery ones."""
    q_g, q_q, g_g = _numpy("q_g_dist", q_g_dist), _numpy("q_q_dist", q_q_dist), _numpy("g_g_dist", g_g_dist)
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(f"q_q_dist must be {(num_q, num_q)} and g_g_dist {(num_g, num_g)} for a q_g_dist of "
                         f"{q_g.shape}, got {q_q.shape} and {g_g.shape}")
    check_int("k1", k1)
    check_int("k2", k2)
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    original = np.power(np.block([[q_q, q_g], [q_g.T, g_g]]), 2).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    initial_rank = np.argsort(original).astype(np.int32)
    encoding = _encode(original, initial_rank, k1)
    if k2 != 1:  # row by row: V is (Q+G)^2, a (Q+G)^2 x k2 gather would not fit for a real gallery
        expanded = np.empty_like(encoding)
        for i in range(len(encoding)):
            expanded[i] = encoding[initial_rank[i, :k2]].mean(0)
        encoding = expanded
    jaccard = np.zeros((num_q, len(original)), dtype=np.float32)
    for i in range(num_q):
        used = np.flatnonzero(encoding[i])
        overlap = np.minimum(encoding[i, used][None, :], encoding[:, used]).sum(1, dtype=np.float32)
        jaccard[i] = 1 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + original[:num_q] * lambda_value
    return final[:, num_q:]
