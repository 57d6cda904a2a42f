"""MODEL_EMA: the moving average of the weights equals the hand-computed recursion over the weights a run
went through (from per-iteration checkpoints of the same run without EMA); it is what the run evaluates,
what `--weights` loads, and it resumes exactly. timm's own load_checkpoint(use_ema=True) is the reference
for picking the average out of a checkpoint that holds both."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from resbone.detection.config import load_cfg
from resbone.detection.task import DetectionTrainer as Trainer
from resbone.engine.checkpoint import load_weights
from resbone.engine.ema import ModelEMA, ema_decay
from tests.engine.test_trainer import DiesAt, Interrupted
from tests.helpers.detectors import TinyDetector, tiny_cfg


def test_ema_decay_ramps_up_to_the_configured_decay():
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.5, 9) == 0.5  # 10/19 > 0.5: capped


def test_model_ema_follows_the_hand_computed_recursion():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.3)
    weights = []
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
        model.train()(torch.randn(4, 3))  # moves the BatchNorm statistics and num_batches_tracked
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.update(model)
    expected = dict(weights[0])
    for n, state in enumerate(weights[1:], start=1):
        d = min(0.3, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * v if v.is_floating_point() else v for k, v in state.items()}
    got = ema.module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value)
    assert int(got["1.num_batches_tracked"]) == 6 and ema.updates == 6
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_decay_out_of_range_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"MODEL_EMA.DECAY.*1\.0"):
        load_cfg(None, ["MODEL_EMA.DECAY", "1.0"])
    with pytest.raises(ValueError, match="MODEL_EMA.DECAY"):
        ModelEMA(nn.Linear(1, 1), decay=1.5)


def _snapshots(output_dir, iterations):
    return [torch.load(os.path.join(output_dir, f"model_{i:07d}.pth"), weights_only=True)["model"]
            for i in range(1, iterations)]


def test_trainer_averages_the_weights_it_trained_and_evaluates_the_average(tmp_path):
    data = str(tmp_path / "data")
    plain = tiny_cfg(data, str(tmp_path / "plain"), "SOLVER.CHECKPOINT_PERIOD", "1")
    Trainer(plain, model_fn=lambda cfg: TinyDetector()).train()
    trajectory = _snapshots(plain.OUTPUT_DIR, 7)
    trajectory.append(torch.load(tmp_path / "plain" / "model_final.pth", weights_only=True)["model"])
    expected = dict(trajectory[0])
    for n, state in enumerate(trajectory[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * v for k, v in state.items()}

    averaged = tiny_cfg(data, str(tmp_path / "ema"), "MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.9")
    trainer = Trainer(averaged, model_fn=lambda cfg: TinyDetector())
    trainer.train()
    final = torch.load(tmp_path / "ema" / "model_final.pth", weights_only=True)
    for key, value in trajectory[-1].items():  # EMA does not change the training itself
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=1e-6)
    assert final["model_ema"]["updates"] == 7
    for key, value in expected.items():
        torch.testing.assert_close(final["model_ema"]["model"][key], value, rtol=0, atol=1e-6)
        torch.testing.assert_close(trainer.final_model.state_dict()[key], value, rtol=0, atol=1e-6)
    assert not torch.equal(expected["head.weight"], trajectory[-1]["head.weight"])

    loaded = TinyDetector()  # --weights / MODEL.WEIGHT take the average
    load_weights(loaded, str(tmp_path / "ema" / "model_final.pth"))
    torch.testing.assert_close(loaded.state_dict()["head.weight"], expected["head.weight"], rtol=0, atol=1e-6)


def test_resumed_ema_run_ends_with_the_same_average(tmp_path):
    data = str(tmp_path / "data")
    options = ("MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.9")
    straight = tiny_cfg(data, str(tmp_path / "straight"), *options)
    Trainer(straight, model_fn=lambda cfg: TinyDetector()).train()
    broken = tiny_cfg(data, str(tmp_path / "broken"), *options)
    with pytest.raises(Interrupted):
        Trainer(broken, model_fn=lambda cfg: DiesAt(5)).train()
    Trainer(broken, model_fn=lambda cfg: TinyDetector(), resume=True).train()
    a = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)["model_ema"]
    b = torch.load(tmp_path / "broken" / "model_final.pth", weights_only=True)["model_ema"]
    assert a["updates"] == b["updates"] == 7
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6)


def test_a_timm_checkpoint_with_an_ema_loads_the_average_as_timm_does(tmp_path):
    timm = pytest.importorskip("timm")
    import resbone

    torch.manual_seed(0)
    trained, averaged = timm.create_model("resnet18"), timm.create_model("resnet18")
    path = str(tmp_path / "checkpoint.pth.tar")  # what timm's train.py saves
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": trained.state_dict(),
                "state_dict_ema": averaged.state_dict()}, path)
    reference = timm.create_model("resnet18")
    timm.models.load_checkpoint(reference, path)  # use_ema=True by default
    ours = resbone.create_model("resnet18", checkpoint=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))
        assert not torch.allclose(ours(x), trained.eval()(x))
