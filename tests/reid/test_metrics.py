"""CMC and mAP under the Market-1501 protocol equal torchreid's evaluate_rank (its python path, Market-1501
metric) on random distance matrices with junk, distractor and same-camera gallery images; distances equal
torchreid's compute_distance_matrix; a hand-worked case pins the protocol itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resbone.reid.metrics import JUNK, distance_matrix, evaluate_rank, rank_summary
from tests.reid.references import torchreid


def _random_case(seed: int, num_q: int = 20, num_g: int = 120, num_ids: int = 8, cameras: int = 3):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    q_camids = rng.integers(0, cameras, num_q)
    # identities 1..num_ids, distractors 0 and junk -1 in the gallery; every identity seen by every camera once
    g_pids = np.concatenate([np.repeat(np.arange(1, num_ids + 1), cameras),
                             rng.integers(JUNK, num_ids + 1, num_g - num_ids * cameras)])
    g_camids = np.concatenate([np.tile(np.arange(cameras), num_ids),
                               rng.integers(0, cameras, num_g - num_ids * cameras)])
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_rank", [10, 50])
def test_cmc_and_map_equal_torchreids_evaluate_rank(seed, max_rank):
    distmat, q_pids, g_pids, q_camids, g_camids = _random_case(seed)
    assert (g_pids == JUNK).any() and (g_pids == 0).any()
    assert ((g_pids[None, :] == q_pids[:, None]) & (g_camids[None, :] == q_camids[:, None])).any()  # same camera
    real = g_pids != JUNK  # torchreid's Market1501 reader drops the junk images before evaluating
    ref_cmc, ref_map = torchreid().evaluate_rank(distmat[:, real], q_pids, g_pids[real], q_camids, g_camids[real],
                                                 max_rank=max_rank, use_metric_cuhk03=False, use_cython=False)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
    assert cmc.shape == (max_rank,)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=0, atol=1e-6)
    assert mean_ap == pytest.approx(ref_map, abs=1e-9)


def test_more_queries_than_one_chunk_equal_torchreid():
    distmat, q_pids, g_pids, q_camids, g_camids = _random_case(9, num_q=600, num_g=90)  # 3 chunks of 256
    real = g_pids != JUNK
    ref_cmc, ref_map = torchreid().evaluate_rank(distmat[:, real], q_pids, g_pids[real], q_camids, g_camids[real],
                                                 use_cython=False)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert mean_ap == pytest.approx(ref_map, abs=1e-9)


def test_a_query_without_a_match_is_an_error_or_left_out_as_torchreid_does():
    distmat, q_pids, g_pids, q_camids, g_camids = _random_case(0)
    q_pids[3] = 99  # absent from the gallery
    with pytest.raises(ValueError, match=r"1 queries have no gallery image.*\[99\]"):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    real = g_pids != JUNK
    ref_cmc, ref_map = torchreid().evaluate_rank(distmat[:, real], q_pids, g_pids[real], q_camids, g_camids[real],
                                                 use_cython=False)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, skip_unmatched=True)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert mean_ap == pytest.approx(ref_map, abs=1e-9)


def test_hand_worked_ranking():
    # gallery sorted by distance: [junk, same id+cam, wrong, right, wrong, right]
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    g_pids = np.array([JUNK, 7, 3, 7, 0, 7])
    g_camids = np.array([1, 0, 1, 1, 2, 2])
    cmc, mean_ap = evaluate_rank(distmat, [7], g_pids, [0], g_camids, max_rank=4)
    # kept list: wrong, right, wrong, right -> first hit at rank 2; AP = (1/2 + 2/4) / 2
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1])
    assert mean_ap == pytest.approx(0.5)
    assert rank_summary(cmc, mean_ap, ranks=(1, 2)) == {"mAP": 50.0, "rank-1": 0.0, "rank-2": 100.0}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_distances_equal_torchreids(metric, rng):
    query, gallery = torch.randn(7, 16, generator=rng), torch.randn(11, 16, generator=rng)
    expected = torchreid().compute_distance_matrix(query, gallery, metric)
    torch.testing.assert_close(distance_matrix(query, gallery, metric), expected, rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named():
    distmat, q_pids, g_pids, q_camids, g_camids = _random_case(1)
    with pytest.raises(ValueError, match="g_pids must hold one value per row/column of distmat"):
        evaluate_rank(distmat, q_pids, g_pids[:-1], q_camids, g_camids)
    with pytest.raises(ValueError, match="max_rank must be a positive int"):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=0)
    with pytest.raises(ValueError, match=r"metric must be one of \('euclidean', 'cosine'\)"):
        distance_matrix(torch.zeros(2, 3), torch.zeros(2, 3), "manhattan")
    with pytest.raises(ValueError, match="same C"):
        distance_matrix(torch.zeros(2, 3), torch.zeros(2, 4))
