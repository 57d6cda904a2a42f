"""The training loop: an interrupted run resumed from its checkpoint ends exactly where an uninterrupted
run ends (same iteration, learning rate, batches and weights); checkpoints are atomic and load with
weights_only=True; metrics.jsonl and the curves PNG are written. Uses the stand-in TinyDetector."""
from __future__ import annotations

import json
import os
import re

import pytest
import torch

from resbone.detection.config import load_cfg
from resbone.detection.task import DetectionTrainer as Trainer
from resbone.engine.checkpoint import last_checkpoint
from resbone.engine.solver import lr_factor
from tests.helpers.detectors import TinyDetector, tiny_cfg
from tests.helpers.interrupt import Interrupted


class DiesAt(TinyDetector):
    """Raises at its n-th training forward: a run killed between two checkpoints."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls, self.n = 0, n

    def forward(self, images, targets=None):
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                raise Interrupted
        return super().forward(images, targets)


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def test_resume_continues_with_same_lr_iteration_and_weights(tmp_path):
    data = str(tmp_path / "data")
    straight = tiny_cfg(data, str(tmp_path / "straight"))
    Trainer(straight, model_fn=lambda cfg: TinyDetector()).train()
    reference = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)

    broken = tiny_cfg(data, str(tmp_path / "broken"))
    with pytest.raises(Interrupted):
        Trainer(broken, model_fn=lambda cfg: DiesAt(5)).train()  # dies in iteration 5, after checkpoint 3
    assert last_checkpoint(broken.OUTPUT_DIR).endswith("model_0000003.pth")
    assert [r["iter"] for r in _metrics(broken.OUTPUT_DIR)] == [1, 2, 3, 4]

    resumed = Trainer(broken, model_fn=lambda cfg: TinyDetector(), resume=True)
    assert resumed.start_iter == 3
    expected_lr = 0.05 * lr_factor(3, steps=(5,), gamma=0.1, warmup_factor=1 / 3, warmup_iters=4,
                                   warmup_method="linear")
    weight_group = [g for g in resumed.optimizer.param_groups if g["params"][0].dim() > 1][0]
    assert weight_group["lr"] == pytest.approx(expected_lr, rel=1e-12)
    resumed.train()
    final = torch.load(tmp_path / "broken" / "model_final.pth", weights_only=True)
    assert final["iteration"] == reference["iteration"] == 7
    for key, value in reference["model"].items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=1e-6)
    straight_log, resumed_log = _metrics(straight.OUTPUT_DIR), _metrics(broken.OUTPUT_DIR)
    assert [r["iter"] for r in resumed_log] == list(range(1, 8))  # iteration 4's record is not doubled
    for a, b in zip(straight_log, resumed_log):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12) and a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_outputs_are_complete_and_safe(tmp_path):
    cfg = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "out"), "SOLVER.TEST_AFTER_TRAIN", "True",
                   "SOLVER.MAX_ITER", "3", "SOLVER.CLIP_GRAD_NORM", "1.0", "SOLVER.PROGRESS_BAR", "True")
    result = Trainer(cfg, model_fn=lambda cfg: TinyDetector()).train()
    names = sorted(os.listdir(cfg.OUTPUT_DIR))
    assert names == ["curves.png", "eval_results.json", "last_checkpoint", "log.txt", "metrics.jsonl",
                     "model_final.pth"]
    assert not [n for n in names if ".tmp" in n]  # every file was moved into place whole
    state = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "iteration", "cfg", "class_names"}
    assert state["class_names"] == ["square", "circle", "triangle"]
    assert set(result["eval"]["shapes_val"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert json.load(open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"))) == result["eval"]
    assert os.path.getsize(os.path.join(cfg.OUTPUT_DIR, "curves.png")) > 1000
    # the elapsed time it prints: the whole run, split into preparing (data, model) and training + evaluation
    log = open(os.path.join(cfg.OUTPUT_DIR, "log.txt")).read()
    total, before, during = map(float, re.search(r"run finished in ([\d.]+) s \(data and model ([\d.]+) s, "
                                                 r"training and evaluation ([\d.]+) s\)", log).groups())
    assert log.count("run finished") == 1 and during > 0 and abs(total - (before + during)) <= 0.15
    # a second run in the same process writes its own log.txt and nothing into the first one's
    second = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "out2"), "SOLVER.MAX_ITER", "2")
    Trainer(second, model_fn=lambda cfg: TinyDetector()).train()
    assert open(os.path.join(cfg.OUTPUT_DIR, "log.txt")).read() == log
    assert "training 0 -> 2 iterations" in open(os.path.join(second.OUTPUT_DIR, "log.txt")).read()


def test_batch_larger_than_data_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "out"), "SOLVER.IMS_PER_BATCH", "64")
    with pytest.raises(ValueError, match=r"fewer than SOLVER.IMS_PER_BATCH \(64\)"):
        Trainer(cfg, model_fn=lambda cfg: TinyDetector()).train()


def test_amp_and_clipping_run(tmp_path):
    """SOLVER.AMP (bfloat16 autocast on the CPU) and SOLVER.CLIP_GRAD_NORM: training proceeds with finite
    losses, and clipping bounds the update of a plain SGD step (no momentum yet) by lr * max_norm."""
    cfg = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "out"), "SOLVER.AMP", "True", "SOLVER.MAX_ITER", "1",
                   "SOLVER.CLIP_GRAD_NORM", "1e-3", "SOLVER.WARMUP_ITERS", "0", "SOLVER.WEIGHT_DECAY", "0.0",
                   "SOLVER.BIAS_LR_FACTOR", "1.0")
    trainer = Trainer(cfg, model_fn=lambda cfg: TinyDetector())
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    result = trainer.train()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    assert torch.isfinite(torch.tensor(result["loss"]))
    assert 0 < float((after - before).norm()) <= 0.05 * 1e-3 * (1 + 1e-4)


def test_model_weight_from_a_torchvision_backbone_file_fills_the_detector_backbone(tmp_path):
    """FCOS's MODEL.WEIGHT is usually ImageNet weights of the body alone: they land in model.backbone
    through resbone.convert, and the FPN / head keep their own initialisation."""
    import torchvision

    from resbone.detection.detector import build_detector
    from resbone.engine.checkpoint import load_weights

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    cfg = load_cfg(None, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN-RETINANET", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
                          "MODEL.FCOS.NUM_CLASSES", "4"])
    model = build_detector(cfg)
    head_before = model.head.cls_logits.weight.clone()
    load_weights(model, str(tmp_path / "r18.pth"))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=0)
    assert torch.equal(model.head.cls_logits.weight, head_before)
    with pytest.raises(ValueError, match="no dialect"):
        torch.save({"something.else": torch.zeros(3)}, tmp_path / "junk.pth")
        load_weights(model, str(tmp_path / "junk.pth"))


def test_resume_into_another_model_is_a_clear_error(tmp_path):
    """A checkpoint of another architecture (here 5 classes instead of 3) used to fail inside
    load_state_dict with a RuntimeError; now a ValueError names the checkpoint and what to do."""
    cfg = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "out"), "SOLVER.MAX_ITER", "1")
    Trainer(cfg, model_fn=lambda cfg: TinyDetector()).train()
    with pytest.raises(ValueError, match=r"(?s)--resume: .*model_final\.pth does not fit this run.*head\.weight"):
        Trainer(cfg, model_fn=lambda cfg: TinyDetector(num_classes=5), resume=True)


def test_output_dir_that_is_a_file_is_a_clear_error(tmp_path):
    """OUTPUT_DIR naming an existing file used to end in a FileExistsError traceback from os.makedirs."""
    (tmp_path / "notes.txt").write_text("mine")
    cfg = tiny_cfg(str(tmp_path / "data"), str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match=r"OUTPUT_DIR .*notes\.txt is a file"):
        Trainer(cfg, model_fn=lambda cfg: TinyDetector())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_drops_a_metrics_line_cut_short(tmp_path):
    """A run killed while appending to metrics.jsonl leaves a partial last line; resuming used to fail
    with a bare JSONDecodeError ('Expecting ...'). Records up to the checkpoint's iteration stay."""
    from resbone.engine.metrics import truncate_records
    from resbone.engine.visualize import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 1, "loss": 2.0, "lr": 0.1}\n\n{"iter": 2, "loss": 1.5, "lr": 0.1}\n'
                    '{"iter": 3, "loss": 1.0, "lr": 0.1}\n{"iter": 4, "lo')
    assert [r["iter"] for r in read_metrics(str(path))] == [1, 2, 3]
    truncate_records(str(path), 2)
    assert path.read_text() == '{"iter": 1, "loss": 2.0, "lr": 0.1}\n{"iter": 2, "loss": 1.5, "lr": 0.1}\n'


def test_log_follows_the_current_stdout():
    """The log handler used to keep the sys.stdout of the first setup_logging call, so a later
    redirect_stdout (or pytest's capsys in another test) never saw the log."""
    import contextlib
    import io

    from resbone.engine.runtime import logger, setup_logging

    with contextlib.redirect_stdout(io.StringIO()):
        setup_logging()
    later = io.StringIO()
    with contextlib.redirect_stdout(later):
        logger.info("resumed from nowhere")
    assert "resumed from nowhere" in later.getvalue()
