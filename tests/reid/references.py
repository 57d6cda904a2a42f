"""torchreid's and fast-reid's re-id code (metrics, re-ranking, losses, readers, heads), imported file by file.

Their package `__init__`s import cv2, sklearn, gdown and the like, which the tests do not need: every module is
loaded through tests.helpers.references.load_file (hollow parent packages), as tests/convert does.
"""
from __future__ import annotations

import types
import warnings

from tests.helpers.references import load_file

__all__ = ["fastreid", "torchreid"]


def torchreid() -> types.SimpleNamespace:
    """torchreid 0.2.5: evaluate_rank (python path), compute_distance_matrix, re_ranking, CrossEntropyLoss,
    TripletLoss, Market1501 / DukeMTMCreID (their process_dir)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cython evaluation is unavailable": the python path is the reference
        rank = load_file("torchreid.reid.metrics", "rank")
    load_file("torchreid.reid.utils", "tools")  # before the readers, so torchreid.reid.utils stays hollow
    return types.SimpleNamespace(
        evaluate_rank=rank.evaluate_rank,
        compute_distance_matrix=load_file("torchreid.reid.metrics", "distance").compute_distance_matrix,
        re_ranking=load_file("torchreid.reid.utils", "rerank").re_ranking,
        CrossEntropyLoss=load_file("torchreid.reid.losses", "cross_entropy_loss").CrossEntropyLoss,
        TripletLoss=load_file("torchreid.reid.losses", "hard_mine_triplet_loss").TripletLoss,
        Market1501=load_file("torchreid.reid.data.datasets.image", "market1501").Market1501,
        DukeMTMCreID=load_file("torchreid.reid.data.datasets.image", "dukemtmcreid").DukeMTMCreID)


def fastreid() -> types.SimpleNamespace:
    """fast-reid 1.4: triplet_loss, re_ranking, EmbeddingHead, GeneralizedMeanPooling(P)."""
    from fastreid.layers import pooling
    from fastreid.modeling.heads.embedding_head import EmbeddingHead
    from fastreid.modeling.losses.triplet_loss import triplet_loss

    return types.SimpleNamespace(triplet_loss=triplet_loss, re_ranking=load_file("fastreid.evaluation", "rerank")
                                 .re_ranking, EmbeddingHead=EmbeddingHead, pooling=pooling)
