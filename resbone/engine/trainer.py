"""Train any task from its config, in one process or under torchrun: the loop of resbone.engine.train_loop
with the hooks of resbone.engine.hooks, on the data, model, losses and evaluation of a resbone.engine.task.Task.

Anchor: detectron2's `DefaultTrainer` (builds the model, optimizer, scheduler and data from the config,
registers the default hooks, resumes from the last checkpoint) and FCOS `tools/train_net.py`
(iteration-based, global IMS_PER_BATCH split over processes, test after training), with resbone's
additions: OUTPUT_DIR's lock, bit-exact resume (model, optimizer, scheduler, iteration, RNG and data
position), metrics.jsonl and a curves PNG, EMA, AMP, compile, channels_last.
Proven by tests/engine/test_trainer.py (resume), tests/engine/test_train_loop.py and
tests/engine/test_distributed.py.
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable

import torch
from torch import nn

from resbone.engine import distributed as comm
from resbone.engine import hooks
from resbone.engine.accelerate import accelerate_as_configured
from resbone.engine.checkpoint import last_checkpoint, load_training_state
from resbone.engine.config import check_weight
from resbone.engine.data import build_train_batches, per_rank
from resbone.engine.ema import ModelEMA
from resbone.engine.metrics import truncate_records
from resbone.engine.output_dir import claim_output_dir
from resbone.engine.runtime import join_processes, logger, start_process
from resbone.engine.solver import build_lr_scheduler, build_optimizer
from resbone.engine.task import Task
from resbone.engine.train_loop import SimpleTrainer
from resbone.utils.files import naming_write_errors

__all__ = ["Trainer"]


class Trainer(SimpleTrainer):
    """Iteration-based training of `task`'s model (or `model`, or `model_fn(cfg)`) on its training set.

    `trainer.train()` runs SOLVER.MAX_ITER iterations (from the last checkpoint if resume=True), saves
    model_NNNNNNN.pth every CHECKPOINT_PERIOD and model_final.pth, evaluates every TEST.EVAL_PERIOD and, with
    SOLVER.TEST_AFTER_TRAIN, at the end; returns {'iteration', 'loss', 'eval': {...}}. With MODEL_EMA.ENABLED
    the moving average of the weights (`final_model`) is what is evaluated; checkpoints hold it as
    `model_ema`, beside the trained weights. An OUTPUT_DIR holding a run is refused unless `resume` or
    `overwrite`; the trainer holds OUTPUT_DIR/run.lock from construction to the end of train() (or close()).
    `threads`: intra-op threads (default: OMP_NUM_THREADS, else this process's share of the cores)."""

    def __init__(self, cfg, task: Task, *, model: nn.Module | None = None, resume: bool = False,
                 overwrite: bool = False, model_fn: Callable | None = None, threads: int | None = None) -> None:
        self.created = time.perf_counter()  # the run's elapsed time counts the data it generates too
        self.cfg, self.task = cfg, task
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
                device = start_process(cfg, self.output_dir, threads=threads)
            self._build(model, model_fn, resume, device)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release OUTPUT_DIR's lock (train() does it when it ends)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _build(self, model: nn.Module | None, model_fn: Callable | None, resume: bool, device) -> None:
        cfg, task = self.cfg, self.task
        self.batch_size = per_rank(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        self.dataset = task.build_train_set(cfg)
        torch.manual_seed(cfg.SEED)
        random.seed(cfg.SEED)
        if model is None:
            model = model_fn(cfg) if model_fn is not None else task.build_model(cfg, self.dataset)
        model = self._place(model, device)
        optimizer = build_optimizer(cfg, model, lr_factor=lambda name: task.param_lr_factor(cfg, name))
        super().__init__(model, iter(()), optimizer, loss_fn=task.losses, to_device=task.to_device, device=device,
                         amp=bool(cfg.SOLVER.AMP), amp_dtype=cfg.SOLVER.AMP_DTYPE,
                         clip_grad_norm=cfg.SOLVER.CLIP_GRAD_NORM)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.start_iter = 0
        if resume:
            self._resume()

    def _place(self, model: nn.Module, device: torch.device) -> nn.Module:
        if self.cfg.MODEL.USE_SYNCBN and comm.get_world_size() > 1:
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # torch's SyncBatchNorm runs on GPUs only
                logger.warning("MODEL.USE_SYNCBN: SyncBatchNorm needs GPUs; on the CPU each process keeps "
                               "its own BatchNorm statistics")
        model = model.to(device)
        # the average is copied from the eager model (a compiled forward would still point at the original)
        self.ema = ModelEMA(model, self.cfg.MODEL_EMA.DECAY) if self.cfg.MODEL_EMA.ENABLED else None
        if self.ema is not None:
            accelerate_as_configured(self.ema.module, self.cfg, method=self.task.network_method)
        return accelerate_as_configured(model, self.cfg, method=self.task.network_method)

    @property
    def final_model(self) -> nn.Module:
        """The weights a run evaluates and deploys: the moving average with MODEL_EMA, else the model."""
        return self.module if self.ema is None else self.ema.module

    # -- checkpoints
    def checkpoint_state(self, iteration: int) -> dict:
        return dict(model=self.module.state_dict(), optimizer=self.optimizer.state_dict(),
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
            self.module.load_state_dict(state["model"])
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

    def build_hooks(self) -> list[hooks.HookBase]:
        """detectron2's default hooks, in their order: schedule, average, records / log, checkpoints, evaluation."""
        cfg = self.cfg
        self.eval_hook = hooks.EvalHook(self._evaluate, self.output_dir, period=cfg.TEST.EVAL_PERIOD,
                                        after_train=bool(cfg.SOLVER.TEST_AFTER_TRAIN))
        return [hooks.LRScheduler(), hooks.EMA() if self.ema is not None else None,
                hooks.MetricsWriter(self._metrics_path, period=cfg.SOLVER.LOG_PERIOD,
                                    progress_bar=bool(cfg.SOLVER.PROGRESS_BAR)),
                hooks.PeriodicCheckpointer(self.output_dir, period=cfg.SOLVER.CHECKPOINT_PERIOD), self.eval_hook]

    def _evaluate(self) -> dict:
        comm.broadcast_buffers(self.final_model)
        return self.task.evaluate(self.cfg, self.final_model, self.device, progress=bool(self.cfg.SOLVER.PROGRESS_BAR))

    # -- the loop
    def train(self) -> dict:
        try:
            return self._train()
        finally:
            self.close()

    def _train(self) -> dict:
        cfg = self.cfg
        self.model = self._training_model()
        self.data = build_train_batches(self.dataset, batch_size=self.batch_size, seed=cfg.SEED,
                                        collate_fn=self.task.collate, start_iter=self.start_iter,
                                        num_workers=cfg.DATALOADER.NUM_WORKERS,
                                        batch_sampler=self.task.batch_sampler(cfg, self.dataset, self.batch_size))
        self._hooks = []
        self.register_hooks(self.build_hooks())
        writer = next(h for h in self._hooks if isinstance(h, hooks.MetricsWriter))
        try:
            super().train(self.start_iter, cfg.SOLVER.MAX_ITER)
        finally:
            writer.close()
        result = dict(iteration=cfg.SOLVER.MAX_ITER, loss=self.storage.last.get("loss", float("nan")))
        if self.eval_hook.run_after_train and self.eval_hook.results:
            result["eval"] = self.eval_hook.results
        if comm.is_main_process():
            total, elapsed = time.perf_counter() - self.created, self.storage.elapsed()
            logger.info("run finished in %.1f s (data and model %.1f s, training and evaluation %.1f s)", total,
                        total - elapsed, elapsed)
        return result

    def _training_model(self) -> nn.Module:
        model = self.module
        if comm.get_world_size() > 1:
            model = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
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


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_rng_restore(state) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss
