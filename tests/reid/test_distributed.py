"""The re-id task under two gloo processes (as torchrun starts them): each rank trains on its own P x K groups
of identities with DDP (the center loss's centres, used outside the model's forward, included), and the
evaluation gathered from both ranks equals a one-process evaluation of the saved weights."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from resbone.reid.data import ReidImages, read_reid_folder, reid_transforms
from resbone.reid.evaluation import gather_features
from resbone.reid.predictor import load_reid_model
from resbone.reid.task import ReidTrainer
from tests.reid.conftest import tiny_cfg

OPTS = ("SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_INSTANCE", "4", "SOLVER.CENTER_LOSS_WEIGHT", "0.0005",
        "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "TEST.RANKED_QUERIES", "0")


def _gallery(root: str) -> ReidImages:
    return ReidImages(read_reid_folder(root)["gallery"], reid_transforms((64, 32), train=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, output_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from resbone.engine import distributed

    try:
        trainer = ReidTrainer(tiny_cfg(root, output_dir, *OPTS))
        result = trainer.train()
        features = gather_features(trainer.module, _gallery(root), trainer.device, batch_size=5)
        torch.save(dict(eval=result["eval"], features=features, rank=trainer.task.batch_sampler(
            trainer.cfg, trainer.dataset, 8).rank, centers=trainer.model.module.center.centers.detach()),
                   os.path.join(output_dir, f"rank{rank}.pt"))
    finally:
        distributed.cleanup()


@pytest.mark.slow
def test_two_gloo_processes_train_and_evaluate(reid_set, tmp_path):
    out = str(tmp_path / "two")
    os.makedirs(out)
    mp.spawn(_worker, args=(2, _free_port(), reid_set, out), nprocs=2, join=True)
    ranks = [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]  # each process drew its own share of the identities
    torch.testing.assert_close(ranks[0]["centers"], ranks[1]["centers"])  # DDP kept the centres in step
    assert ranks[0]["eval"] == ranks[1]["eval"] and set(ranks[0]["eval"][reid_set]) >= {"mAP", "rank-1"}
    # the gallery's embeddings, each rank embedding every other image, gathered in the set's order
    cfg = tiny_cfg(reid_set, str(tmp_path / "one"), *OPTS)
    model, _ = load_reid_model(cfg, os.path.join(out, "model_final.pth"))
    with torch.no_grad():
        alone = torch.cat([model(images) for images, *_ in torch.utils.data.DataLoader(_gallery(reid_set),
                                                                                      batch_size=7)])
    torch.testing.assert_close(ranks[0]["features"], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ranks[1]["features"], ranks[0]["features"])
