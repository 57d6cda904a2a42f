"""Train, evaluate and run the FCOS detector from a config, in one process or under torchrun.

Anchor: FCOS `tools/train_net.py` + `engine/trainer.py` / `engine/inference.py` (iteration-based
loop, global IMS_PER_BATCH split over processes, periodic checkpoints, test after training) with
resbone's additions: a tqdm bar with ETA and losses, metrics.jsonl and a curves PNG, optional AMP and
gradient clipping, bit-exact resume (model, optimizer, scheduler, iteration, RNG and data position).
Proven by tests/engine/test_trainer.py (overfit, resume) and tests/engine/test_distributed.py.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from typing import Callable, Iterator

import torch
from torch import nn

from resbone.detection.data import COCODetection, collate, resolve_dataset
from resbone.detection.evaluation import COCO_METRICS, evaluate_coco
from resbone.engine import distributed as comm
from resbone.engine.checkpoint import last_checkpoint, load_checkpoint, load_weights, save_checkpoint
from resbone.engine.config import check_weight
from resbone.engine.solver import build_lr_scheduler, build_optimizer
from resbone.engine.visualize import plot_curves

__all__ = ["Trainer", "build_model", "build_dataset", "build_train_batches", "build_test_loader",
           "inference", "evaluate", "select_device", "setup_logging"]

logger = logging.getLogger("resbone")


class _StdoutHandler(logging.StreamHandler):
    """Writes to sys.stdout as it is at each record (redirect_stdout, pytest's capture), not as it was
    when the first Trainer set the logger up."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(output_dir: str | None = None) -> None:
    """Rank 0 logs to stdout (and OUTPUT_DIR/log.txt); other ranks only warnings."""
    logger.setLevel(logging.INFO if comm.is_main_process() else logging.WARNING)
    logger.propagate = False
    formatter = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    if not any(getattr(h, "_resbone", None) == "stream" for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(formatter)
        handler._resbone = "stream"
        logger.addHandler(handler)
    if output_dir and comm.is_main_process():
        path = os.path.abspath(os.path.join(output_dir, "log.txt"))
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            os.makedirs(output_dir, exist_ok=True)
            handler = logging.FileHandler(path)
            handler.setFormatter(formatter)
            logger.addHandler(handler)


def select_device(cfg) -> torch.device:
    """MODEL.DEVICE; FCOS's default 'cuda' falls back to the CPU (with a note) when there is no GPU."""
    name = str(cfg.MODEL.DEVICE)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            logger.info("MODEL.DEVICE is %r but no GPU is available: running on the CPU", name)
            return torch.device("cpu")
        if comm.get_world_size() > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device(name)
    if name != "cpu":
        raise ValueError(f"MODEL.DEVICE must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return torch.device("cpu")


def build_model(cfg) -> nn.Module:
    """build_detector(cfg), then MODEL.WEIGHT (a local file) if set."""
    from resbone.detection.detector import build_detector

    check_weight(cfg.MODEL.WEIGHT)
    model = build_detector(cfg)
    if cfg.MODEL.WEIGHT:
        load_weights(model, cfg.MODEL.WEIGHT)
    return model


# ---- data --------------------------------------------------------------------------------------------
def build_dataset(cfg, names, *, is_train: bool) -> COCODetection:
    """The data sets named in DATASETS.TRAIN / TEST (several training sets are concatenated)."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"DATASETS.{'TRAIN' if is_train else 'TEST'} is empty; name a data set, "
                         "e.g. DATASETS.TRAIN \"('shapes_train',)\"")
    shapes = dict(num_train=cfg.DATASETS.SHAPES.NUM_TRAIN, num_val=cfg.DATASETS.SHAPES.NUM_VAL,
                  image_size=cfg.DATASETS.SHAPES.IMAGE_SIZE, seed=cfg.DATASETS.SHAPES.SEED)
    # rank 0 generates the shapes set (if needed) while the others wait
    if comm.is_main_process():
        paths = [resolve_dataset(n, root=cfg.DATASETS.ROOT, shapes=shapes) for n in names]
    comm.barrier()
    if not comm.is_main_process():
        paths = [resolve_dataset(n, root=cfg.DATASETS.ROOT, shapes=shapes) for n in names]
    flip = cfg.INPUT.HORIZONTAL_FLIP_PROB_TRAIN if is_train else 0.0
    sets = [COCODetection(ann, image_dir, remove_images_without_annotations=is_train, flip_prob=flip,
                          seed=cfg.SEED) for image_dir, ann in paths]
    if len(sets) == 1:
        return sets[0]
    return _ConcatDetection(sets)


class _ConcatDetection(torch.utils.data.ConcatDataset):
    """Several training sets; labels are taken as they are (the sets must share their categories)."""

    def __init__(self, sets):
        names = [s.class_names for s in sets]
        if any(n != names[0] for n in names):
            raise ValueError(f"DATASETS.TRAIN mixes sets with different categories: {names}")
        super().__init__(sets)
        self.class_names = names[0]

    def set_epoch(self, epoch: int) -> None:
        for s in self.datasets:
            s.set_epoch(epoch)


def build_train_batches(dataset, *, batch_size: int, seed: int, start_iter: int = 0,
                        num_workers: int = 0) -> Iterator[tuple[list, list]]:
    """Endless batches for this rank. Epoch e uses DistributedSampler's permutation (seed + e), so
    the union of the ranks' batches at an iteration is the one-process batch of the global size, and
    a resumed run sees the same batches as an uninterrupted one."""
    world, rank = comm.get_world_size(), comm.get_rank()
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=seed, drop_last=False)
    per_epoch = len(sampler) // batch_size
    if per_epoch == 0:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than SOLVER.IMS_PER_BATCH "
                         f"({batch_size * world}); lower IMS_PER_BATCH or add images")
    epoch, skip = divmod(start_iter, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        batches = list(torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True))[skip:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=num_workers)
        yield from loader
        epoch, skip = epoch + 1, 0


def build_test_loader(dataset, *, batch_size: int, num_workers: int = 0):
    """This rank's share of the test set (indices rank::world, no padding, no duplicates)."""
    indices = list(range(comm.get_rank(), len(dataset), comm.get_world_size()))
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                       shuffle=False, collate_fn=collate, num_workers=num_workers)


def _per_rank(total: int, what: str) -> int:
    world = comm.get_world_size()
    if total % world:
        raise ValueError(f"{what} ({total}) must be divisible by the number of processes ({world})")
    return total // world


# ---- inference / evaluation --------------------------------------------------------------------------
@torch.no_grad()
def inference(model: nn.Module, loader, device: torch.device, *, progress: bool = False) -> dict:
    """{image_id: prediction on the CPU} for the whole set, gathered from every rank."""
    was_training = model.training
    model.eval()
    predictions = {}
    try:
        from tqdm import tqdm

        for images, targets in tqdm(loader, desc="inference", disable=not (progress and comm.is_main_process()),
                                    leave=False, dynamic_ncols=True):
            outputs = model([im.to(device) for im in images])
            for target, output in zip(targets, outputs):
                predictions[target["image_id"]] = {k: v.detach().cpu() for k, v in output.items()}
    finally:
        model.train(was_training)
    merged = {}
    for part in comm.all_gather_object(predictions):
        merged.update(part)
    return merged


def evaluate(cfg, model: nn.Module, device: torch.device | None = None, *, progress: bool = True
             ) -> dict[str, dict[str, float]]:
    """COCO AP of `model` on every set of DATASETS.TEST: {name: {AP, AP50, ...}} (on every rank)."""
    device = device or select_device(cfg)
    results = {}
    batch = _per_rank(cfg.TEST.IMS_PER_BATCH, "TEST.IMS_PER_BATCH")
    for name in cfg.DATASETS.TEST:
        dataset = build_dataset(cfg, name, is_train=False)
        loader = build_test_loader(dataset, batch_size=batch, num_workers=cfg.DATALOADER.NUM_WORKERS)
        start = time.perf_counter()
        predictions = inference(model, loader, device, progress=progress)
        metrics = evaluate_coco(dataset.coco, predictions, dataset.label_to_cat_id)
        results[name] = metrics
        logger.info("%s: %d images in %.1f s; %s", name, len(dataset), time.perf_counter() - start,
                    "  ".join(f"{k} {metrics[k]:.3f}" for k in COCO_METRICS))
    return results


# ---- training ----------------------------------------------------------------------------------------
class Trainer:
    """Iteration-based SGD training of `model` (default: build_model(cfg)) on DATASETS.TRAIN.

    `trainer.train()` runs SOLVER.MAX_ITER iterations (from the last checkpoint if resume=True), saves
    model_NNNNNNN.pth every CHECKPOINT_PERIOD and model_final.pth, then evaluates on DATASETS.TEST when
    SOLVER.TEST_AFTER_TRAIN; returns {'iteration', 'loss', 'eval': {...}}."""

    def __init__(self, cfg, *, model: nn.Module | None = None, resume: bool = False,
                 model_fn: Callable | None = None) -> None:
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"OUTPUT_DIR {self.output_dir} is a file; pass a folder for the checkpoints and logs")
        comm.init_distributed(str(cfg.MODEL.DEVICE) if torch.cuda.is_available() else "cpu")
        setup_logging(self.output_dir)
        self.device = select_device(cfg)
        self.batch_size = _per_rank(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        if model is None and model_fn is None:
            check_weight(cfg.MODEL.WEIGHT)  # before generating data: the cheap error first
        self.dataset = build_dataset(cfg, cfg.DATASETS.TRAIN, is_train=True)
        if model is None and model_fn is None:
            _check_num_classes(cfg, self.dataset)
        torch.manual_seed(cfg.SEED)
        random.seed(cfg.SEED)
        if model is None:
            model = (model_fn or build_model)(cfg)
        if cfg.MODEL.USE_SYNCBN and comm.get_world_size() > 1:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # torch's SyncBatchNorm runs on GPUs only
                logger.warning("MODEL.USE_SYNCBN: SyncBatchNorm needs GPUs; on the CPU each process keeps "
                               "its own BatchNorm statistics")
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp = bool(cfg.SOLVER.AMP)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")
        self.start_iter = 0
        if resume:
            self._resume()

    # -- checkpoints
    def _state(self, iteration: int) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
                    iteration=iteration, cfg=self.cfg.dump(), class_names=list(self.dataset.class_names),
                    torch_rng=torch.get_rng_state(), python_rng=_python_rng_state())

    def _resume(self) -> None:
        path = last_checkpoint(self.output_dir)
        if path is None:
            logger.info("--resume: no checkpoint in %s, starting from iteration 0", self.output_dir)
            return
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            random.setstate(_python_rng_restore(state["python_rng"]))
            self.start_iter = int(state["iteration"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"--resume: {path} does not fit this run ({type(error).__name__}: {error}); resume "
                             "with the config it was written with, or train afresh in another OUTPUT_DIR") from None
        logger.info("resumed from %s at iteration %d (lr %.6g)", path, self.start_iter,
                    self.optimizer.param_groups[0]["lr"])

    # -- the loop
    def train(self) -> dict:
        from tqdm import tqdm

        cfg, solver = self.cfg, self.cfg.SOLVER
        max_iter = solver.MAX_ITER
        main = comm.is_main_process()
        model = self.model
        if comm.get_world_size() > 1:
            model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        model.train()
        batches = build_train_batches(self.dataset, batch_size=self.batch_size, seed=cfg.SEED,
                                      start_iter=self.start_iter, num_workers=cfg.DATALOADER.NUM_WORKERS)
        if main:
            os.makedirs(self.output_dir, exist_ok=True)
            logger.info("training %d -> %d iterations, %d images per batch over %d process(es) on %s",
                        self.start_iter, max_iter, solver.IMS_PER_BATCH, comm.get_world_size(), self.device)
        metrics_path = os.path.join(self.output_dir, "metrics.jsonl")
        if main:  # a fresh run starts a fresh log; a resumed one drops what it will write again
            _truncate_metrics(metrics_path, self.start_iter)
        bar = tqdm(total=max_iter, initial=self.start_iter, disable=not (main and solver.PROGRESS_BAR),
                   dynamic_ncols=True, desc="train", file=sys.stderr)
        losses, window, window_size = {}, {}, 0
        start = time.perf_counter()
        for iteration in range(self.start_iter, max_iter):
            data_start = time.perf_counter()
            images, targets = next(batches)
            data_time = time.perf_counter() - data_start
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()}
                       for t in targets]
            lr = self.optimizer.param_groups[0]["lr"]
            with torch.autocast(self.device.type, enabled=self.amp,
                                dtype=torch.float16 if self.device.type == "cuda" else torch.bfloat16):
                loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at iteration {iteration + 1} "
                                         f"({ {k: v.item() for k, v in loss_dict.items()} }); lower "
                                         "SOLVER.BASE_LR or set SOLVER.CLIP_GRAD_NORM")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if solver.CLIP_GRAD_NORM > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), solver.CLIP_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            done = iteration + 1
            losses = comm.reduce_mean({"loss": loss.item(), **{k: v.item() for k, v in loss_dict.items()}})
            for key, value in losses.items():
                window[key] = window.get(key, 0.0) + value
            window_size += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2g}", refresh=False)
            if main and (done % solver.LOG_PERIOD == 0 or done == max_iter or done == self.start_iter + 1):
                # losses averaged over the iterations since the last record: smoother curves
                record = dict(iter=done, lr=lr, **{k: round(v / window_size, 6) for k, v in window.items()},
                              data_time=round(data_time, 4),
                              time=round((time.perf_counter() - start) / (done - self.start_iter), 4))
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                if not solver.PROGRESS_BAR:
                    logger.info("iter %d/%d  lr %.4g  %s", done, max_iter, lr,
                                "  ".join(f"{k} {v / window_size:.4f}" for k, v in window.items()))
                window, window_size = {}, 0
            if done % solver.CHECKPOINT_PERIOD == 0 or done == max_iter:
                name = "model_final.pth" if done == max_iter else f"model_{done:07d}.pth"
                if main:
                    save_checkpoint(self.output_dir, name, self._state(done))
                    plot_curves(self.output_dir)
                comm.barrier()
        bar.close()
        if main and max_iter > self.start_iter:
            elapsed = time.perf_counter() - start
            logger.info("trained %d iterations in %.1f s (%.3f s / iteration); final loss %.4f",
                        max_iter - self.start_iter, elapsed, elapsed / (max_iter - self.start_iter),
                        losses.get("loss", math.nan))
        result = dict(iteration=max_iter, loss=losses.get("loss", math.nan))
        if solver.TEST_AFTER_TRAIN and cfg.DATASETS.TEST:
            result["eval"] = evaluate(cfg, self.model, self.device, progress=bool(solver.PROGRESS_BAR))
            if main:
                with open(metrics_path, "a") as handle:
                    for name, metrics in result["eval"].items():
                        handle.write(json.dumps(dict(iter=max_iter, dataset=name, **metrics)) + "\n")
                _write_json(os.path.join(self.output_dir, "eval_results.json"), result["eval"])
        return result


def _check_num_classes(cfg, dataset) -> None:
    classes = len(dataset.class_names)
    if cfg.MODEL.FCOS.NUM_CLASSES != classes + 1:
        raise ValueError(f"MODEL.FCOS.NUM_CLASSES is {cfg.MODEL.FCOS.NUM_CLASSES} but DATASETS.TRAIN has "
                         f"{classes} categories; FCOS counts the background: set MODEL.FCOS.NUM_CLASSES "
                         f"{classes + 1}")


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def _truncate_metrics(path: str, iteration: int) -> None:
    """Keep only the training records up to `iteration` (0: none)."""
    if not os.path.isfile(path):
        return
    lines = []
    with open(path) as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short when the interrupted run was killed
                continue
            if isinstance(record, dict) and record.get("iter", 0) <= iteration and "dataset" not in record:
                lines.append(line if line.endswith("\n") else line + "\n")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        handle.writelines(lines)
    os.replace(tmp, path)


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_rng_restore(state) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss
