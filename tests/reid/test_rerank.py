"""k-reciprocal re-ranking equals torchreid's and fast-reid's re_ranking (the authors' code) on the same
query-gallery, query-query and gallery-gallery distances, for several feature draws and parameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resbone.reid.metrics import distance_matrix
from resbone.reid.rerank import re_ranking
from tests.reid.references import fastreid, torchreid


def _distances(seed: int, metric: str, num_q: int = 12, num_g: int = 60):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 16, generator=gen)  # clustered features, so that k-reciprocal sets form
    features = centres[torch.randint(6, (num_q + num_g,), generator=gen)] + 0.5 * torch.randn(num_q + num_g, 16,
                                                                                            generator=gen)
    q, g = features[:num_q], features[num_q:]
    return [distance_matrix(a, b, metric).numpy() for a, b in ((q, g), (q, q), (g, g))]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_default_parameters_equal_torchreid_and_fastreid(seed, metric):
    q_g, q_q, g_g = _distances(seed, metric)
    ours = re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)
    assert ours.shape == q_g.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, torchreid().re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3), atol=1e-6)
    np.testing.assert_allclose(ours, fastreid().re_ranking(q_g, q_q, g_g, 20, 6, 0.3), atol=1e-6)
    assert not np.allclose(ours, q_g)  # the re-ranking changed the distances


@pytest.mark.parametrize("k1, k2, lambda_value", [(5, 1, 0.0), (7, 3, 0.5), (20, 6, 1.0)])
def test_other_parameters_equal_torchreid(k1, k2, lambda_value):
    q_g, q_q, g_g = _distances(5, "euclidean")
    expected = torchreid().re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value)
    np.testing.assert_allclose(re_ranking(torch.from_numpy(q_g), q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value),
                               expected, atol=1e-6)


def test_bad_arguments_are_named():
    q_g, q_q, g_g = _distances(0, "euclidean")
    with pytest.raises(ValueError, match=r"g_g_dist must be|q_q_dist must be"):
        re_ranking(q_g, q_q, g_g[:-1, :-1])
    with pytest.raises(ValueError, match="k1 must be a positive int"):
        re_ranking(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match=r"lambda_value must be in \[0, 1\]"):
        re_ranking(q_g, q_q, g_g, lambda_value=1.5)
