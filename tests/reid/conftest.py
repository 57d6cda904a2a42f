"""A small generated re-id set shared by the data, picture and training tests (generated once per session)."""
from __future__ import annotations

import pytest

from resbone.reid.synthetic import generate_reid_set

SMALL = dict(train_ids=6, test_ids=5, cameras=3, per_camera=2, distractors=4, junk=3, seed=0)


@pytest.fixture(scope="session")
def reid_set(tmp_path_factory) -> str:
    return generate_reid_set(tmp_path_factory.mktemp("reid") / "market", **SMALL)
