"""Two gloo processes (as torchrun would start them) train like one process with the same global batch:
the DistributedSampler shards of an iteration make up the one-process batch, DDP averages the
gradients, so the weights after a few SGD steps are the same; evaluation is gathered across ranks."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from resbone.detection.detector import build_detector
from resbone.detection.task import DetectionTrainer as Trainer
from resbone.models.resnet import ResNet
from tests.helpers.detectors import TinyDetector, tiny_cfg


def _narrow_fcos(cfg):
    """The real FCOS (FPN, head, targets, losses) on a narrow GroupNorm R-18: GN keeps per-sample
    statistics, so sharding the batch across processes changes nothing but the summation order."""
    backbone = ResNet(18, num_classes=None, out_indices=(1, 2, 3), base_channels=16,
                      norm_cfg=dict(type="GN", num_groups=8))
    return build_detector(cfg, backbone=backbone)


MODELS = {"tiny": lambda cfg: TinyDetector(), "fcos": _narrow_fcos}
OPTIONS = {"tiny": (), "fcos": (
    "MODEL.FCOS.NUM_CLASSES", "4", "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CONVS", "1",
    "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "48", "INPUT.MIN_SIZE_TEST", "48",
    "INPUT.MAX_SIZE_TEST", "48", "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", "0.0")}


def _cfg(kind: str, data: str, output_dir: str):
    return tiny_cfg(data, output_dir, "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "4",
                    "SOLVER.TEST_AFTER_TRAIN", "True", *OPTIONS[kind])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, output_dir: str, kind: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from resbone.engine import distributed

    try:
        result = Trainer(_cfg(kind, data, output_dir), model_fn=MODELS[kind]).train()
        torch.save(result["eval"], os.path.join(output_dir, f"eval_rank{rank}.pt"))
    finally:
        distributed.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tiny", "fcos"])
def test_two_gloo_processes_match_one_process(tmp_path, kind):
    data = str(tmp_path / "data")
    single = _cfg(kind, data, str(tmp_path / "one"))
    one = Trainer(single, model_fn=MODELS[kind]).train()  # also generates the data set

    os.makedirs(tmp_path / "two")
    mp.spawn(_worker, args=(2, _free_port(), data, str(tmp_path / "two"), kind), nprocs=2, join=True)

    a = torch.load(tmp_path / "one" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "two" / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 4
    moved = 0.0
    initial = MODELS[kind](single).state_dict()  # only a scale for "the weights moved"
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-5)
        moved = max(moved, float((value - initial[key]).abs().max()))
    assert moved > 0
    # only rank 0 wrote checkpoints and logs; both ranks got the same gathered evaluation
    assert not [n for n in os.listdir(tmp_path / "two") if "rank1" in n and n.endswith(".pth")]
    eval0 = torch.load(tmp_path / "two" / "eval_rank0.pt", weights_only=True)
    eval1 = torch.load(tmp_path / "two" / "eval_rank1.pt", weights_only=True)
    assert eval0 == eval1
    for name, value in one["eval"]["shapes_val"].items():
        assert eval0["shapes_val"][name] == pytest.approx(value, abs=1e-6), name
