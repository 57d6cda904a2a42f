"""A small generated re-id set shared by the data, picture and training tests (generated once per session)."""
from __future__ import annotations

import pytest

from resbone.reid.synthetic import generate_reid_set

SMALL = dict(train_ids=6, test_ids=5, cameras=3, per_camera=2, distractors=4, junk=3, seed=0)


@pytest.fixture(scope="session")
def reid_set(tmp_path_factory) -> str:
    return generate_reid_set(tmp_path_factory.mktemp("reid") / "market", **SMALL)


def tiny_cfg(root: str, output_dir: str, *opts: str):
    """A re-id config for tests: a narrow resnet18 at 64x32 on `root`, P x K = 3 x 4, one thread's worth of work."""
    from resbone.reid.config import load_cfg

    return load_cfg(None, [
        "MODEL.NAME", "resnet18", "MODEL.BASE_CHANNELS", "8", "MODEL.POOLING", "avg", "MODEL.DEVICE", "cpu",
        "DATASETS.TRAIN", str(root), "DATASETS.TEST", f"('{root}',)", "INPUT.SIZE", "(64, 32)",
        "SOLVER.IMS_PER_BATCH", "12", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(2,)",
        "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1", "SOLVER.PROGRESS_BAR", "False",
        "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "16", "TEST.RANKED_QUERIES", "4",
        "OUTPUT_DIR", str(output_dir), *opts])
