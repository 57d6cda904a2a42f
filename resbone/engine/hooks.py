"""The periodic work of a training run, as hooks: learning-rate schedule, weight average, records and log
lines, checkpoints, evaluation.

Anchor: detectron2's `engine/hooks.py` (`LRScheduler`, `PeriodicCheckpointer`, `PeriodicWriter` with its
`CommonMetricPrinter` line: eta, iter, losses, time, data_time, lr; `EvalHook` every EVAL_PERIOD and after
the last step). Each hook reads what it needs from its trainer (resbone.engine.trainer.Trainer). A
terminal gets a tqdm bar; a log file (stdout / stderr not a terminal) gets one line per record, or every
LINE_SECONDS when records are rarer. Proven by tests/engine/test_trainer.py and tests/engine/test_hooks.py.
"""
from __future__ import annotations

import datetime
import os
import time

from resbone.engine import distributed as comm
from resbone.engine.checkpoint import save_checkpoint
from resbone.engine.metrics import append_records, write_json
from resbone.engine.runtime import is_terminal, logger
from resbone.engine.train_loop import HookBase
from resbone.engine.visualize import plot_curves
from resbone.utils.files import naming_write_errors

__all__ = ["LRScheduler", "EMA", "MetricsWriter", "PeriodicCheckpointer", "EvalHook", "LINE_SECONDS", "log_line"]

# without a terminal, a log line at least this often (detectron2's writers: every 20 iterations only)
LINE_SECONDS = 60.0


class LRScheduler(HookBase):
    """Steps the trainer's scheduler after each optimizer step (detectron2's LRScheduler hook)."""

    def after_step(self) -> None:
        self.trainer.scheduler.step()


class EMA(HookBase):
    """Updates the trainer's moving average of the weights after each optimizer step."""

    def after_step(self) -> None:
        self.trainer.ema.update(self.trainer.module)


def log_line(done: int, max_iter: int, lr: float, means: dict, *, seconds_per_iter: float, data_time: float) -> str:
    """detectron2's CommonMetricPrinter line: eta, iteration, losses, time per iteration, data time, lr."""
    eta = datetime.timedelta(seconds=int(seconds_per_iter * (max_iter - done)))
    losses = "  ".join(f"{k}: {v:.4g}" for k, v in means.items())
    return (f"eta: {eta}  iter: {done}/{max_iter}  {losses}  time: {seconds_per_iter:.4f}  "
            f"data_time: {data_time:.4f}  lr: {lr:.4g}")


class MetricsWriter(HookBase):
    """metrics.jsonl (losses averaged since the last record, lr, times) every `period` iterations, the first
    and the last; the progress as a tqdm bar on a terminal (`progress_bar`), else as log lines."""

    def __init__(self, path: str, *, period: int, progress_bar: bool) -> None:
        self.path, self.period, self.progress_bar = path, period, progress_bar
        self.bar = None
        self.last_line = time.perf_counter()

    def before_train(self) -> None:
        trainer = self.trainer
        if comm.is_main_process() and self.progress_bar and is_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.max_iter, initial=trainer.start_iter, dynamic_ncols=True, desc="train")
        self.last_line = time.perf_counter()

    def after_step(self) -> None:
        trainer, storage = self.trainer, self.trainer.storage
        done = trainer.iter + 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{storage.last['loss']:.3f}", lr=f"{storage.lr:.2g}", refresh=False)
        if not comm.is_main_process():
            return
        seconds = storage.seconds_per_iteration(done)
        if done % self.period == 0 or done == trainer.max_iter or done == trainer.start_iter + 1:
            means = storage.take()
            record = dict(iter=done, lr=storage.lr, **{k: round(v, 6) for k, v in means.items()},
                          data_time=round(storage.data_time, 4), time=round(seconds, 4))
            with naming_write_errors(os.path.dirname(self.path)):
                append_records(self.path, [record])
            self._line(done, means, seconds)
        elif self.bar is None and time.perf_counter() - self.last_line >= LINE_SECONDS:
            self._line(done, storage.means(), seconds)

    def _line(self, done: int, means: dict, seconds: float) -> None:
        if self.bar is not None:
            return
        storage = self.trainer.storage
        logger.info("%s", log_line(done, self.trainer.max_iter, storage.lr, means, seconds_per_iter=seconds,
                                   data_time=storage.data_time))
        self.last_line = time.perf_counter()

    def after_train(self) -> None:
        self.close()
        trainer = self.trainer
        iterations = trainer.max_iter - trainer.start_iter
        if comm.is_main_process() and iterations > 0:
            elapsed = trainer.storage.elapsed()
            logger.info("trained %d iterations in %.1f s (%.3f s / iteration); final loss %.4f", iterations,
                        elapsed, elapsed / iterations, trainer.storage.last.get("loss", float("nan")))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PeriodicCheckpointer(HookBase):
    """model_NNNNNNN.pth every `period` iterations and model_final.pth at the end (the trainer's
    `checkpoint_state`), then the curves PNG redrawn from metrics.jsonl."""

    def __init__(self, output_dir: str, *, period: int) -> None:
        self.output_dir, self.period = output_dir, period

    def after_step(self) -> None:
        done, max_iter = self.trainer.iter + 1, self.trainer.max_iter
        if done % self.period and done != max_iter:
            return
        if comm.is_main_process():
            name = "model_final.pth" if done == max_iter else f"model_{done:07d}.pth"
            with naming_write_errors(self.output_dir):
                save_checkpoint(self.output_dir, name, self.trainer.checkpoint_state(done))
                plot_curves(self.output_dir)
        comm.barrier()


class EvalHook(HookBase):
    """`evaluate()` -> {data set: {metric: value}} every `period` iterations (0: never during training) and
    after the last one when `after_train`; the results go to metrics.jsonl (with the data set's name) and
    the last ones to eval_results.json. `results` holds the last results."""

    def __init__(self, evaluate, output_dir: str, *, period: int, after_train: bool) -> None:
        self.evaluate, self.output_dir = evaluate, output_dir
        self.period, self.run_after_train = period, after_train
        self.results: dict | None = None

    def _run(self, done: int) -> None:
        self.results = self.evaluate()
        if comm.is_main_process() and self.results:
            with naming_write_errors(self.output_dir):
                append_records(os.path.join(self.output_dir, "metrics.jsonl"),
                               [dict(iter=done, dataset=name, **metrics) for name, metrics in self.results.items()])
                write_json(os.path.join(self.output_dir, "eval_results.json"), self.results)

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        if self.period and done % self.period == 0 and done != self.trainer.max_iter:
            self._run(done)

    def after_train(self) -> None:
        if self.run_after_train:
            self._run(self.trainer.max_iter)
