"""The re-id task on the engine: its losses, learning rates and weights equal a hand-written torch loop (Adam with
the L2 weight decay, warm-up and step, PK batches, flips / pad-crop / random erasing, the center loss) on the same
batches; a run killed mid-way and resumed gives the losses and weights of an uninterrupted one; its evaluation
equals the engine-free resbone.reid.baseline.evaluate on the same model; the config's keys are checked."""
from __future__ import annotations

import json
import os
import random

import pytest
import torch
from torch.utils.data import DataLoader

from resbone.reid.baseline import evaluate, reid_loaders
from resbone.reid.config import load_cfg
from resbone.reid.data import ReidImages, read_reid_folder, reid_transforms
from resbone.reid.losses import CenterLoss, ReidCriterion
from resbone.reid.model import ReidModel
from resbone.reid.sampler import PKSampler
from resbone.reid.task import ReidTask, ReidTrainer, build_reid_model
from tests.helpers.interrupt import Interrupted, dies_at
from tests.reid.conftest import tiny_cfg


def _records(output_dir) -> list[dict]:
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [r for r in map(json.loads, handle) if "loss" in r]


def _hand_loop(root: str, iterations: int) -> tuple[list[dict], ReidModel, CenterLoss]:
    """reid-strong-baseline's loop written with torch alone: seed, model, then PK batches epoch by epoch."""
    torch.manual_seed(0)
    random.seed(0)
    model = ReidModel(6, "resnet18", pooling="avg", base_channels=8)
    center = CenterLoss(6, model.num_features)
    criterion = ReidCriterion(6, model.num_features)  # label smoothing 0.1, margin 0.3
    params = [p for p in [*model.parameters(), *center.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4)
    # warm-up from 0.1 over 2 iterations, x0.1 from iteration 2
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: (0.1 + 0.9 * i / 2) if i < 2 else 0.1)
    # augmentations seeded per (SEED, epoch, index), as the task's (resbone.engine.data.seeded_sample)
    train = ReidImages(read_reid_folder(root)["train"], reid_transforms((64, 32), train=True), seed=0)
    sampler = PKSampler(train.labels, p=3, k=4, seed=0)
    model.train()
    records, epoch = [], 0
    while len(records) < iterations:
        sampler.set_epoch(epoch)
        train.set_epoch(epoch)
        loader = DataLoader(train, batch_sampler=list(sampler), generator=torch.Generator())
        for images, labels, _, _ in loader:
            if len(records) == iterations:
                break
            output = model(images)
            losses = criterion(output.logits, output.embedding, labels)
            losses["loss_center"] = 0.0005 * center(output.embedding, labels)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            records.append(dict(lr=optimizer.param_groups[0]["lr"], loss=loss.item(),
                                **{k: v.item() for k, v in losses.items()}))
            optimizer.step()
            schedule.step()
        epoch += 1
    return records, model, center


def test_losses_and_weights_equal_a_hand_written_loop(reid_set, tmp_path):
    cfg = tiny_cfg(reid_set, tmp_path / "run", "SOLVER.CENTER_LOSS_WEIGHT", "0.0005", "SOLVER.TEST_AFTER_TRAIN",
                   "False")
    ReidTrainer(cfg).train()  # 6 identities at P = 3: the 3 iterations cross an epoch
    expected, model, center = _hand_loop(reid_set, 3)
    got = _records(cfg.OUTPUT_DIR)
    assert [r["iter"] for r in got] == [1, 2, 3]
    for mine, theirs in zip(got, expected):
        for key in ("lr", "loss", "loss_id", "loss_triplet", "loss_center"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    state = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["center.centers"], center.centers.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_losses_and_weights_of_an_uninterrupted_run(reid_set, tmp_path, workers):
    # the resumed run with loader workers against an uninterrupted run without: augmentations (flip, pad-crop,
    # erasing) are seeded per (SEED, epoch, index), not by whichever worker drew the item
    opts = ("SOLVER.MAX_ITER", "5", "SOLVER.TEST_AFTER_TRAIN", "False", "MODEL_EMA.ENABLED", "True")
    straight = tiny_cfg(reid_set, tmp_path / "straight", *opts)
    ReidTrainer(straight).train()
    broken = tiny_cfg(reid_set, tmp_path / "broken", *opts, "DATALOADER.NUM_WORKERS", str(workers))
    with pytest.raises(Interrupted):
        ReidTrainer(broken, model_fn=dies_at(4, lambda cfg: build_reid_model(cfg, 6))).train()  # after checkpoint 2
    resumed = ReidTrainer(broken, model_fn=lambda cfg: build_reid_model(cfg, 6), resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    resumed_log, straight_log = _records(broken.OUTPUT_DIR), _records(straight.OUTPUT_DIR)
    assert [r["iter"] for r in resumed_log] == [r["iter"] for r in straight_log] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in straight_log], rel=1e-6)
    a = torch.load(tmp_path / "broken" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)
    assert b["class_names"] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a["model_ema"]["model"][key], b["model_ema"]["model"][key], rtol=0, atol=1e-6)


def test_evaluation_equals_the_engine_free_baselines(reid_set, tmp_path):
    cfg = tiny_cfg(reid_set, tmp_path / "run", "TEST.RERANK", "True")
    torch.manual_seed(0)
    model = build_reid_model(cfg, 6)
    mine = ReidTask().evaluate(cfg, model, torch.device("cpu"), progress=False)[reid_set]
    loaders = reid_loaders(reid_set, size=(64, 32), p=3, k=2)
    theirs = evaluate(model, loaders["query"], loaders["gallery"], rerank=True)
    for key in ("mAP", "rank-1", "rank-5", "rank-10"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-9), key
    assert (mine["num_query"], mine["num_gallery"]) == (len(loaders["query"].dataset), len(loaders["gallery"].dataset))
    assert os.path.getsize(mine["ranked_png"]) > 0 and mine["ranked_png"].endswith("ranked_market.png")


@pytest.mark.parametrize("opts, error, message", [
    (("SOLVER.MARGN", "0.3"), KeyError, r"unknown config key SOLVER.MARGN .*did you mean SOLVER.MARGIN"),
    (("INPUT.AUTO_AUGMENT", "ta_wide"), KeyError, r"unknown config key INPUT.AUTO_AUGMENT"),  # a classification key
    (("MODEL.POOLING", "max"), ValueError, r"MODEL.POOLING must be one of 'gem', 'avg', got 'max'"),
    (("MODEL.LAST_STRIDE", "3"), ValueError, r"MODEL.LAST_STRIDE must be one of 1, 2, got 3"),
    (("DATASETS.NAMING", "msmt17"), ValueError, r"DATASETS.NAMING must be one of 'market1501', 'dukemtmc'"),
    (("TEST.METRIC", "l1"), ValueError, r"TEST.METRIC must be one of 'euclidean', 'cosine'"),
    (("SOLVER.LABEL_SMOOTHING", "1.0"), ValueError, r"SOLVER.LABEL_SMOOTHING must be >= 0 and < 1, got 1.0"),
    (("SOLVER.MARGIN", "-0.3"), ValueError, r"SOLVER.MARGIN must be >= 0"),
    (("DATALOADER.NUM_INSTANCE", "1"), ValueError, r"DATALOADER.NUM_INSTANCE must be >= 2"),
    (("SOLVER.IMS_PER_BATCH", "30"), ValueError, r"SOLVER.IMS_PER_BATCH \(30\) must be P x DATALOADER.NUM_INSTANCE"),
    (("INPUT.SIZE", "(256,)"), ValueError, r"INPUT.SIZE must be \(height, width\)"),
    (("MODEL.BNNECK", "yes"), TypeError, r"config key MODEL.BNNECK .* must be a boolean"),
    (("SOLVER.OPTIMIZER", "Adagrad"), ValueError, r"SOLVER.OPTIMIZER must be one of 'SGD', 'AdamW', 'Adam'"),
])
def test_config_keys_are_checked(opts, error, message):
    with pytest.raises(error, match=message):
        load_cfg(None, list(opts))


def test_data_errors_are_named_before_training(reid_set, tmp_path):
    with pytest.raises(ValueError, match="DATASETS.TRAIN is empty"):
        ReidTrainer(tiny_cfg(reid_set, tmp_path / "a", "DATASETS.TRAIN", ""))
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        ReidTrainer(tiny_cfg(reid_set, tmp_path / "b", "DATASETS.TEST", f"('{tmp_path}',)"))
    with pytest.raises(ValueError, match=r"PKSampler needs at least p=8 identities, the labels have 6"):
        ReidTrainer(tiny_cfg(reid_set, tmp_path / "c", "SOLVER.IMS_PER_BATCH", "32")).train()
