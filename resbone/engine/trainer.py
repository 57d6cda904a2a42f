"""Train the FCOS detector from a config, in one process or under torchrun.

Anchor: FCOS `tools/train_net.py` + `engine/trainer.py` (iteration-based loop, global IMS_PER_BATCH split
over processes, periodic checkpoints, test after training) with resbone's additions: a tqdm bar with ETA
and losses, metrics.jsonl and a curves PNG, optional AMP and gradient clipping, bit-exact resume (model,
optimizer, scheduler, iteration, RNG and data position). The data, evaluation and runtime (log, device,
threads, processes) live in their own modules; this one is the loop: `step` (one SGD iteration),
`_log`, `_checkpoint`. Proven by tests/engine/test_trainer.py (overfit, resume) and
tests/engine/test_distributed.py.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from typing import Callable

import torch
from torch import nn

from resbone.engine import distributed as comm
from resbone.engine.accelerate import accelerate_model, autocast
from resbone.engine.checkpoint import last_checkpoint, load_training_state, load_weights, save_checkpoint
from resbone.engine.config import check_weight
from resbone.engine.data import build_dataset, build_train_batches, per_rank
from resbone.engine.ema import ModelEMA
from resbone.engine.evaluation import evaluate
from resbone.engine.metrics import append_records, truncate_records, write_json
from resbone.engine.output_dir import claim_output_dir
from resbone.engine.runtime import join_processes, logger, start_process
from resbone.engine.solver import build_lr_scheduler, build_optimizer
from resbone.engine.visualize import plot_curves
from resbone.utils.files import naming_write_errors

__all__ = ["Trainer", "build_detector_with_weight"]


def build_detector_with_weight(cfg) -> nn.Module:
    """build_detector(cfg), then MODEL.WEIGHT (a local file) if set."""
    from resbone.detection.detector import build_detector

    check_weight(cfg.MODEL.WEIGHT)
    model = build_detector(cfg)
    if cfg.MODEL.WEIGHT:
        load_weights(model, cfg.MODEL.WEIGHT)
    return model


class Trainer:
    """Iteration-based SGD training of `model` (default: build_detector_with_weight(cfg)) on DATASETS.TRAIN.

    `trainer.train()` runs SOLVER.MAX_ITER iterations (from the last checkpoint if resume=True), saves
    model_NNNNNNN.pth every CHECKPOINT_PERIOD and model_final.pth, then evaluates on DATASETS.TEST when
    SOLVER.TEST_AFTER_TRAIN; returns {'iteration', 'loss', 'eval': {...}}. With MODEL_EMA.ENABLED the moving
    average of the weights (`final_model`) is what is evaluated; checkpoints hold it as `model_ema`, beside
    the trained weights, and loading a checkpoint's weights (MODEL.WEIGHT, --weights) takes the average.
    An OUTPUT_DIR holding a run is refused unless `resume` or `overwrite`; the trainer holds OUTPUT_DIR/run.lock
    from construction to the end of train() (or close()). `threads`: intra-op threads (default:
    OMP_NUM_THREADS, else this process's share of the cores, see runtime.choose_threads)."""

    def __init__(self, cfg, *, model: nn.Module | None = None, resume: bool = False, overwrite: bool = False,
                 model_fn: Callable | None = None, threads: int | None = None) -> None:
        self.created = time.perf_counter()  # the run's elapsed time counts the data it generates too
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"OUTPUT_DIR {self.output_dir} is a file; pass a folder for the checkpoints and logs")
        if model is None and model_fn is None:
            check_weight(cfg.MODEL.WEIGHT)  # before generating data or taking the folder: the cheap error first
        join_processes(cfg)
        self.lock = None
        try:
            with naming_write_errors(self.output_dir):
                if comm.is_main_process():
                    self.lock = claim_output_dir(self.output_dir, resume=resume, overwrite=overwrite)
                self.device = start_process(cfg, self.output_dir, threads=threads)
            self._build(model, model_fn, resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release OUTPUT_DIR's lock (train() does it when it ends)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _build(self, model: nn.Module | None, model_fn: Callable | None, resume: bool) -> None:
        cfg = self.cfg
        self.batch_size = per_rank(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        self.dataset = build_dataset(cfg, cfg.DATASETS.TRAIN, is_train=True)
        if model is None and model_fn is None:
            _check_num_classes(cfg, self.dataset)
        torch.manual_seed(cfg.SEED)
        random.seed(cfg.SEED)
        self.model = self._place((model_fn or build_detector_with_weight)(cfg) if model is None else model)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp = bool(cfg.SOLVER.AMP)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")
        self.start_iter = 0
        if resume:
            self._resume()

    def _place(self, model: nn.Module) -> nn.Module:
        if self.cfg.MODEL.USE_SYNCBN and comm.get_world_size() > 1:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # torch's SyncBatchNorm runs on GPUs only
                logger.warning("MODEL.USE_SYNCBN: SyncBatchNorm needs GPUs; on the CPU each process keeps "
                               "its own BatchNorm statistics")
        model = model.to(self.device)
        accelerate = dict(compile=bool(self.cfg.MODEL.COMPILE), channels_last=bool(self.cfg.MODEL.CHANNELS_LAST))
        # the average is copied from the eager model (a compiled forward would still point at the original)
        self.ema = ModelEMA(model, self.cfg.MODEL_EMA.DECAY) if self.cfg.MODEL_EMA.ENABLED else None
        if self.ema is not None:
            accelerate_model(self.ema.module, **accelerate)
        return accelerate_model(model, **accelerate)

    @property
    def final_model(self) -> nn.Module:
        """The weights a run evaluates and deploys: the moving average with MODEL_EMA, else the model."""
        return self.model if self.ema is None else self.ema.module

    # -- checkpoints
    def _state(self, iteration: int) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
                    iteration=iteration, cfg=self.cfg.dump(), class_names=list(self.dataset.class_names),
                    torch_rng=torch.get_rng_state(), python_rng=_python_rng_state(),
                    **({} if self.ema is None else dict(model_ema=self.ema.state_dict())))

    def _resume(self) -> None:
        path = last_checkpoint(self.output_dir)
        if path is None:
            logger.info("--resume: no checkpoint in %s, starting from iteration 0", self.output_dir)
            return
        state = load_training_state(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None and "model_ema" in state:
                self.ema.load_state_dict(state["model_ema"])
            elif self.ema is not None:  # EMA turned on for the rest of a run: it starts from these weights
                logger.warning("--resume: %s has no MODEL_EMA weights; the average starts at iteration %d",
                               path, int(state["iteration"]))
            torch.set_rng_state(state["torch_rng"])
            random.setstate(_python_rng_restore(state["python_rng"]))
            self.start_iter = int(state["iteration"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"--resume: {path} does not fit this run ({type(error).__name__}: {error}); resume "
                             "with the config it was written with, or train afresh in another OUTPUT_DIR") from None
        logger.info("resumed from %s at iteration %d (lr %.6g)", path, self.start_iter,
                    self.optimizer.param_groups[0]["lr"])

    def _checkpoint(self, done: int) -> None:
        if done % self.cfg.SOLVER.CHECKPOINT_PERIOD and done != self.cfg.SOLVER.MAX_ITER:
            return
        if comm.is_main_process():
            name = "model_final.pth" if done == self.cfg.SOLVER.MAX_ITER else f"model_{done:07d}.pth"
            with naming_write_errors(self.output_dir):
                save_checkpoint(self.output_dir, name, self._state(done))
                plot_curves(self.output_dir)
        comm.barrier()

    # -- one iteration
    def step(self, model: nn.Module, images: list, targets: list, iteration: int) -> dict[str, float]:
        """One SGD iteration of `model` (self.model, or its DDP wrapper) on a batch already on the device;
        returns the losses averaged over the processes."""
        with autocast(self.device, enabled=self.amp, dtype=self.cfg.SOLVER.AMP_DTYPE):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at iteration {iteration + 1} "
                                     f"({ {k: v.item() for k, v in loss_dict.items()} }); lower "
                                     "SOLVER.BASE_LR or set SOLVER.CLIP_GRAD_NORM")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.SOLVER.CLIP_GRAD_NORM > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.CLIP_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return comm.reduce_mean({"loss": loss.item(), **{k: v.item() for k, v in loss_dict.items()}})

    def _next_batch(self, batches) -> tuple[list, list, float]:
        start = time.perf_counter()
        images, targets = next(batches)
        data_time = time.perf_counter() - start
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        return images, targets, data_time

    # -- the loop
    def train(self) -> dict:
        try:
            return self._train()
        finally:
            self.close()

    def _train(self) -> dict:
        from tqdm import tqdm

        solver = self.cfg.SOLVER
        model = self._training_model()
        batches = build_train_batches(self.dataset, batch_size=self.batch_size, seed=self.cfg.SEED,
                                      start_iter=self.start_iter, num_workers=self.cfg.DATALOADER.NUM_WORKERS)
        bar = tqdm(total=solver.MAX_ITER, initial=self.start_iter, file=sys.stderr, dynamic_ncols=True,
                   disable=not (comm.is_main_process() and solver.PROGRESS_BAR), desc="train")
        log = _LossWindow(self.start_iter)
        for iteration in range(self.start_iter, solver.MAX_ITER):
            images, targets, data_time = self._next_batch(batches)
            lr = self.optimizer.param_groups[0]["lr"]
            losses = self.step(model, images, targets, iteration)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2g}", refresh=False)
            self._log(log, iteration + 1, lr, losses, data_time)
            self._checkpoint(iteration + 1)
        bar.close()
        return self._finish(log)

    def _training_model(self) -> nn.Module:
        model = self.model
        if comm.get_world_size() > 1:
            model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        model.train()
        if comm.is_main_process():
            os.makedirs(self.output_dir, exist_ok=True)
            logger.info("training %d -> %d iterations, %d images per batch over %d process(es) on %s",
                        self.start_iter, self.cfg.SOLVER.MAX_ITER, self.cfg.SOLVER.IMS_PER_BATCH,
                        comm.get_world_size(), self.device)
            # a fresh run starts a fresh log; a resumed one drops what it will write again
            with naming_write_errors(self.output_dir):
                truncate_records(self._metrics_path, self.start_iter)
        return model

    @property
    def _metrics_path(self) -> str:
        return os.path.join(self.output_dir, "metrics.jsonl")

    def _log(self, log: _LossWindow, done: int, lr: float, losses: dict, data_time: float) -> None:
        log.add(losses)
        solver = self.cfg.SOLVER
        if not comm.is_main_process() or not (done % solver.LOG_PERIOD == 0 or done == solver.MAX_ITER
                                               or done == self.start_iter + 1):
            return
        # losses averaged over the iterations since the last record: smoother curves
        means = log.take()
        record = dict(iter=done, lr=lr, **{k: round(v, 6) for k, v in means.items()}, data_time=round(data_time, 4),
                      time=round(log.seconds_per_iteration(done), 4))
        with naming_write_errors(self.output_dir):
            append_records(self._metrics_path, [record])
        if not solver.PROGRESS_BAR:
            logger.info("iter %d/%d  lr %.4g  %s", done, solver.MAX_ITER, lr,
                        "  ".join(f"{k} {v:.4f}" for k, v in means.items()))

    def _finish(self, log: _LossWindow) -> dict:
        cfg, main = self.cfg, comm.is_main_process()
        iterations = cfg.SOLVER.MAX_ITER - self.start_iter
        if main and iterations > 0:
            elapsed = log.elapsed()
            logger.info("trained %d iterations in %.1f s (%.3f s / iteration); final loss %.4f", iterations,
                        elapsed, elapsed / iterations, log.last.get("loss", math.nan))
        result = dict(iteration=cfg.SOLVER.MAX_ITER, loss=log.last.get("loss", math.nan))
        if cfg.SOLVER.TEST_AFTER_TRAIN and cfg.DATASETS.TEST:
            result["eval"] = evaluate(cfg, self.final_model, self.device, progress=bool(cfg.SOLVER.PROGRESS_BAR))
            if main:
                with naming_write_errors(self.output_dir):
                    append_records(self._metrics_path, [dict(iter=cfg.SOLVER.MAX_ITER, dataset=name, **metrics)
                                                        for name, metrics in result["eval"].items()])
                    write_json(os.path.join(self.output_dir, "eval_results.json"), result["eval"])
        if main:
            total = time.perf_counter() - self.created
            logger.info("run finished in %.1f s (data and model %.1f s, training and evaluation %.1f s)", total,
                        total - log.elapsed(), log.elapsed())
        return result


class _LossWindow:
    """Sums of the losses since the last record, and the time since training started."""

    def __init__(self, start_iter: int) -> None:
        self.start_iter, self.start = start_iter, time.perf_counter()
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last: dict[str, float] = {}

    def add(self, losses: dict[str, float]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.last = losses

    def take(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def seconds_per_iteration(self, done: int) -> float:
        return self.elapsed() / (done - self.start_iter)


def _check_num_classes(cfg, dataset) -> None:
    classes = len(dataset.class_names)
    if cfg.MODEL.FCOS.NUM_CLASSES != classes + 1:
        raise ValueError(f"MODEL.FCOS.NUM_CLASSES is {cfg.MODEL.FCOS.NUM_CLASSES} but DATASETS.TRAIN has "
                         f"{classes} categories; FCOS counts the background: set MODEL.FCOS.NUM_CLASSES "
                         f"{classes + 1}")


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_rng_restore(state) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss
