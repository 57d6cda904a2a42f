"""The engine's loop (resbone.engine.trainer.Trainer over train_loop.SimpleTrainer and its hooks), given a task
written here, computes what a hand-written torch loop computes on the same batches: the same losses at
every step, the same gradients of the last step and the same weights, with torch's own SGD and
CosineAnnealingLR as the reference (detectron2's WarmupCosineLR without warmup is that schedule)."""
from __future__ import annotations

import copy
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from resbone.engine.config import load_config
from resbone.engine.defaults import engine_cfg
from resbone.engine.task import Task
from resbone.engine.trainer import Trainer

STEPS, BATCH, LR, WD = 4, 4, 0.05, 1e-3


class Pairs(torch.utils.data.Dataset):
    class_names = ["a", "b", "c"]

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.images = torch.randn(12, 3, 16, 16, generator=g)
        self.labels = torch.randint(0, 3, (12,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


class TinyTask(Task):
    """A task written in the test: cross-entropy with label smoothing of a small conv net."""

    name = "tiny"

    def build_train_set(self, cfg):
        return Pairs()

    def build_model(self, cfg, train_set):
        return _net()

    def losses(self, model, batch):
        images, labels = batch
        return {"loss_cls": F.cross_entropy(model(images), labels, label_smoothing=0.1)}

    def evaluate(self, cfg, model, device, *, progress=True):
        return {}


def _cfg(output_dir: str):
    return load_config(engine_cfg(), None, [
        "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", str(STEPS), "SOLVER.IMS_PER_BATCH", str(BATCH),
        "SOLVER.BASE_LR", str(LR), "SOLVER.WEIGHT_DECAY", str(WD), "SOLVER.WEIGHT_DECAY_BIAS", str(WD),
        "SOLVER.BIAS_LR_FACTOR", "1.0", "SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.STEPS", "()", "SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS",
        "0", "SOLVER.PROGRESS_BAR", "False", "OUTPUT_DIR", output_dir, "SEED", "7"])


def _hand_written_loop(dataset: Pairs) -> tuple[nn.Module, list[float]]:
    model = _net().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=WD)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    # DistributedSampler's order for one process: randperm seeded with seed + epoch (3 batches an epoch here)
    order = [i for epoch in range(2) for i in torch.randperm(len(dataset),
                                                           generator=torch.Generator().manual_seed(7 + epoch)).tolist()]
    losses = []
    for step in range(STEPS):
        indices = order[step * BATCH:(step + 1) * BATCH]
        images = torch.stack([dataset[i][0] for i in indices])
        labels = torch.stack([dataset[i][1] for i in indices])
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return model, losses


def test_losses_gradients_and_weights_equal_a_hand_written_loop(tmp_path):
    trainer = Trainer(_cfg(str(tmp_path / "run")), TinyTask())
    result = trainer.train()
    reference, reference_losses = _hand_written_loop(Pairs())
    with open(tmp_path / "run" / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    assert [r["iter"] for r in records] == list(range(1, STEPS + 1))
    torch.testing.assert_close([r["loss"] for r in records], reference_losses, rtol=0, atol=2e-6)
    assert result["loss"] == records[-1]["loss"] or abs(result["loss"] - reference_losses[-1]) < 1e-6
    for (name, mine), theirs in zip(trainer.module.named_parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7, msg=name)
    for (name, mine), theirs in zip(trainer.module.named_buffers(), reference.buffers()):  # BN statistics
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7, msg=name)


def test_the_loop_calls_hooks_in_detectron2s_order(tmp_path):
    from resbone.engine.train_loop import HookBase, SimpleTrainer

    calls = []

    class Recorder(HookBase):
        def before_train(self):
            calls.append("before_train")

        def before_step(self):
            calls.append(f"before_step {self.trainer.iter}")

        def after_step(self):
            calls.append(f"after_step {self.trainer.iter}")

        def after_train(self):
            calls.append(f"after_train {self.trainer.iter}")

    model = _net()
    batches = iter([(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))] * 2)
    loop = SimpleTrainer(model, batches, torch.optim.SGD(model.parameters(), lr=0.1),
                         loss_fn=lambda m, b: {"loss_cls": F.cross_entropy(m(b[0]), b[1])})
    loop.register_hooks([Recorder(), None])
    loop.train(3, 5)
    assert calls == ["before_train", "before_step 3", "after_step 3", "before_step 4", "after_step 4", "after_train 5"]
    assert set(loop.storage.last) == {"loss", "loss_cls"}


def test_a_copied_model_trains_the_same(tmp_path):
    """model= (an instance) and the task's build_model give the same run."""
    first = Trainer(_cfg(str(tmp_path / "a")), TinyTask()).train()
    second = Trainer(_cfg(str(tmp_path / "b")), TinyTask(), model=copy.deepcopy(_net())).train()
    assert first["loss"] == second["loss"]
    assert os.path.isfile(tmp_path / "b" / "model_final.pth")
