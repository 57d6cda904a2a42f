"""Logs that read as logs: without a terminal the training progress is one detectron2-style line per record
(eta, iter, losses, time, data_time, lr) and no carriage-return frame; on a terminal it is a tqdm bar; a
long gap between records still gets a line every LINE_SECONDS."""
from __future__ import annotations

import re

from resbone.engine import hooks, runtime
from resbone.engine.hooks import log_line
from tests.engine.test_train_loop import TinyTask, _cfg


def test_without_a_terminal_progress_is_log_lines(tmp_path, capsys):
    cfg = _cfg(str(tmp_path / "run"))
    cfg.defrost()
    cfg.SOLVER.PROGRESS_BAR = True  # asked for, but stderr is not a terminal here (pytest captures it)
    from resbone.engine.trainer import Trainer

    Trainer(cfg, TinyTask()).train()
    out, err = capsys.readouterr()
    lines = re.findall(r"eta: \d+:\d\d:\d\d  iter: (\d)/4  loss: [\d.]+  loss_cls: [\d.]+  time: [\d.]+  "
                       r"data_time: [\d.]+  lr: [\d.e-]+", out)
    assert lines == ["1", "2", "3", "4"]
    assert "\r" not in err and "\r" not in out


def test_on_a_terminal_progress_is_a_tqdm_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hooks, "is_terminal", lambda: True)
    cfg = _cfg(str(tmp_path / "run"))
    cfg.defrost()
    cfg.SOLVER.PROGRESS_BAR = True
    from resbone.engine.trainer import Trainer

    Trainer(cfg, TinyTask()).train()
    out, err = capsys.readouterr()
    assert "train: 100%" in err and "4/4" in err and "iter: 1/4" not in out


def test_a_line_every_line_seconds_between_records(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hooks, "LINE_SECONDS", 0.0)
    cfg = _cfg(str(tmp_path / "run"))
    cfg.defrost()
    cfg.SOLVER.LOG_PERIOD = 100  # records at iterations 1 and 4 only
    from resbone.engine.trainer import Trainer

    Trainer(cfg, TinyTask()).train()
    assert re.findall(r"iter: (\d)/4", capsys.readouterr().out) == ["1", "2", "3", "4"]


def test_the_line_matches_detectron2s_printer():
    line = log_line(20, 100, 0.01, {"loss": 1.5, "loss_cls": 0.75}, seconds_per_iter=0.5, data_time=0.001)
    assert line == "eta: 0:00:40  iter: 20/100  loss: 1.5  loss_cls: 0.75  time: 0.5000  data_time: 0.0010  lr: 0.01"
    assert runtime.progress_bar([1, 2], desc="x") == [1, 2]  # no terminal: the iterable itself
