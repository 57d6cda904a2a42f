"""Classifier training side by side: `resbone train` against timm's training recipe on the same image folders.

    python -m bench.classify            # generated textures, 6 classes x 100 train / 30 val at 64 px, resnet18,
                                        # batch 32, 3 epochs (54 iterations), 1 thread: about 3-4 minutes
    python -m bench.classify --quick    # a tiny run for the smoke test (numbers meaningless)
    python -m bench.classify --data DIR # your folders: DIR/train/<class>/..., DIR/val/<class>/...
    python -m bench.classify --parts    # instead: forward + backward of both networks (same weights) and the
                                        # loading of a batch on both sides, interleaved in one process

Each side runs as its own process, twice, in the order resbone, timm, timm, resbone, with the same data, model
(resnet18: resbone's from `resbone train`, timm's from `timm.create_model`), batch size, image size, epochs,
recipe and intra-op threads:
- resbone: `python -m resbone train --threads T resbone/configs/classification/textures_resnet18.yaml` with the
  folders, batch, size, iterations (epochs x the full batches of an epoch), one warmup epoch, no evaluation and no
  checkpoint before the end (`resbone_command`).
- timm: timm 1.0.31's sdist ships no `train.py` (the tarball holds timm/, tests/, LICENSE, README.md,
  pyproject.toml, PKG-INFO), and nothing but package registries is reachable here, so the timm side is the loop
  of timm's train.py (`train_one_epoch` without its logging) over the library calls that script makes:
  create_dataset / create_loader (timm's transforms, RandomSampler, drop_last), create_model,
  create_optimizer_v2, create_scheduler_v2 (stepped per update), timm.task.ClassificationTask with
  LabelSmoothingCrossEntropy, timm.utils.accuracy (`run_timm`, in a child process: `--run-timm`).
The recipe of both (`RECIPE`): RandomResizedCrop at the image size, scale 0.8-1, ratio 3/4-4/3, bilinear,
horizontal flip 0.5, no colour jitter / auto-augment / erasing / mixing, label smoothing 0.1, AdamW lr 0.002,
weight decay 0.05 on all but the biases (resbone's WEIGHT_DECAY_BIAS 0; timm's optimizer given the same two
groups), one epoch of linear warmup from lr / 3 (resbone's WARMUP_FACTOR; timm's warmup_lr) then cosine to 0;
evaluation: resize + center crop at the image size (crop_pct 1), ImageNet mean / std. Loading in the training
process (0 workers) on both. The weight initialisations differ (each library's own).

Training images/s: the images of every iteration / the seconds from the first batch request to the end of the
last optimizer step (data loading, forward, backward, step; not start-up, evaluation or checkpoints, whose
amount differs by design). resbone's from its metrics.jsonl (`time`: seconds per iteration since training
started, recorded before the final checkpoint); timm's from perf_counter around the same span. The ratio is
the mean of resbone's two runs' images/s over the mean of timm's (> 1.00x: resbone faster), from one bench
run. Each process's wall and CPU seconds (start-up to exit, evaluation included) are printed too: CPU seconds
move less than wall time when other processes share the machine. Timings are never asserted.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "resbone", "configs", "classification", "textures_resnet18.yaml")
RESULT_TAG = "BENCH_RESULT "
RESBONE, TIMM = "resbone train", "timm (train.py's loop)"
SIDES = (RESBONE, TIMM)
# A B B A: a machine that gets busier or quieter during the run slows both sides alike
ORDER = (RESBONE, TIMM, TIMM, RESBONE)
RECIPE = dict(model="resnet18", scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, interpolation="bilinear",
              smoothing=0.1, opt="adamw", lr=0.002, weight_decay=0.05, warmup_epochs=1, crop_pct=1.0,
              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), seed=0)


def iterations_per_epoch(num_images: int, batch: int) -> int:
    """Full batches of an epoch: both sides drop the last partial batch (timm's loader drop_last, resbone's
    BatchSampler(drop_last=True))."""
    if num_images < batch:
        raise ValueError(f"the training set has {num_images} images, fewer than the batch size {batch}")
    return num_images // batch


def count_images(folder: str) -> int:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sum(name.lower().endswith(IMG_EXTENSIONS) for _, _, files in os.walk(folder) for name in files)


def resbone_command(args, data: dict[str, str], output_dir: str, per_epoch: int) -> list[str]:
    """`resbone train` on the shipped textures config with the run's data, batch, size, length and recipe."""
    r = RECIPE
    opts = {"MODEL.NAME": r["model"], "MODEL.DEVICE": "cpu", "DATASETS.TRAIN": data["train"],
            "DATASETS.TEST": f"('{data['val']}',)", "INPUT.SIZE": args.image_size, "INPUT.TEST_SIZE": args.image_size,
            "INPUT.CROP_PCT": r["crop_pct"], "INPUT.SCALE": f"({r['scale'][0]}, {r['scale'][1]})",
            "INPUT.RATIO": f"({r['ratio'][0]}, {r['ratio'][1]})", "INPUT.HFLIP_PROB": r["hflip"],
            "INPUT.INTERPOLATION": r["interpolation"], "INPUT.MEAN": str(r["mean"]), "INPUT.STD": str(r["std"]),
            "SOLVER.OPTIMIZER": "AdamW", "SOLVER.BASE_LR": r["lr"], "SOLVER.WEIGHT_DECAY": r["weight_decay"],
            "SOLVER.WEIGHT_DECAY_BIAS": 0.0, "SOLVER.BIAS_LR_FACTOR": 1.0, "SOLVER.WARMUP_FACTOR": 1 / 3,
            "SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR", "SOLVER.WARMUP_ITERS": r["warmup_epochs"] * per_epoch,
            "SOLVER.MAX_ITER": args.epochs * per_epoch, "SOLVER.IMS_PER_BATCH": args.batch_size,
            "SOLVER.LABEL_SMOOTHING": r["smoothing"], "SOLVER.CHECKPOINT_PERIOD": args.epochs * per_epoch,
            "SOLVER.LOG_PERIOD": per_epoch, "SOLVER.PROGRESS_BAR": False, "TEST.EVAL_PERIOD": 0,
            "TEST.IMS_PER_BATCH": 120, "DATALOADER.NUM_WORKERS": 0, "SEED": r["seed"], "OUTPUT_DIR": output_dir}
    return [sys.executable, "-m", "resbone", "train", "--threads", str(args.threads), "--overwrite", CONFIG,
            *[str(x) for item in opts.items() for x in item]]


def resbone_result(output_dir: str, batch: int) -> dict[str, float]:
    """Training images/s from metrics.jsonl's last training record, val Acc@1 from eval_results.json."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    training = [r for r in records if "loss" in r and "time" in r]
    if not training:
        raise ValueError(f"{output_dir}/metrics.jsonl holds no training record")
    last = training[-1]
    with open(os.path.join(output_dir, "eval_results.json")) as handle:
        metrics = next(iter(json.load(handle).values()))
    return dict(images_per_s=batch / last["time"], train_seconds=last["time"] * last["iter"],
                iterations=last["iter"], acc1=float(metrics["Acc@1"]), loss=last["loss"])


def timm_command(args, data_root: str) -> list[str]:
    return [sys.executable, "-m", "bench.classify", "--run-timm", "--data", data_root, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
            "--threads", str(args.threads)]


def parse_result(output: str) -> dict[str, float]:
    """The BENCH_RESULT {...} line a `--run-timm` child prints."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise ValueError(f"no {RESULT_TAG.strip()} line in the timm run's output:\n{output[-2000:]}")


def _timm_loaders(data_root: str, batch: int, size: int):
    from timm.data import create_dataset, create_loader

    r, common = RECIPE, dict(input_size=(3, size, size), interpolation=RECIPE["interpolation"], mean=RECIPE["mean"],
                             std=RECIPE["std"], num_workers=0, device="cpu", use_prefetcher=False,
                             persistent_workers=False)
    train_set = create_dataset("", root=data_root, split="train", is_training=True)
    val_set = create_dataset("", root=data_root, split="val")
    train = create_loader(train_set, batch_size=batch, is_training=True, scale=r["scale"], ratio=r["ratio"],
                          hflip=r["hflip"], vflip=0.0, color_jitter=0.0, auto_augment=None, re_prob=0.0, **common)
    val = create_loader(val_set, batch_size=120, is_training=False, crop_pct=r["crop_pct"], **common)
    return train, val, len(train_set.reader.class_to_idx)


def run_timm(args) -> dict[str, float]:
    """train.py's train_one_epoch loop (forward through the task, backward, step, per-update schedule) on timm's
    library, timed from the first batch request to the last step; then top-1 on val (timm.utils.accuracy)."""
    import torch
    from timm import create_model
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.task import ClassificationTask
    from timm.utils import accuracy, random_seed

    torch.set_num_threads(args.threads)
    random_seed(RECIPE["seed"])  # train.py's: torch, numpy and random (timm's crops and flips draw from random)
    train, val, num_classes = _timm_loaders(args.data, args.batch_size, args.image_size)
    model = create_model(RECIPE["model"], num_classes=num_classes)
    task = ClassificationTask(model, criterion=LabelSmoothingCrossEntropy(RECIPE["smoothing"]),
                              device=torch.device("cpu"), verbose=False)
    named = list(model.named_parameters())
    groups = [dict(params=[p for n, p in named if not n.endswith("bias")], weight_decay=RECIPE["weight_decay"]),
              dict(params=[p for n, p in named if n.endswith("bias")], weight_decay=0.0)]
    optimizer = create_optimizer_v2(groups, opt=RECIPE["opt"], lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=args.epochs, min_lr=0.0,
                                       warmup_lr=RECIPE["lr"] / 3,
                                       warmup_epochs=RECIPE["warmup_epochs"], step_on_epochs=False,
                                       updates_per_epoch=len(train))
    updates, loss = 0, math.nan
    start = time.perf_counter()
    for epoch in range(args.epochs):
        task.train()
        for images, target in train:
            loss = task(images, target)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            loss = loss.item()  # train.py's losses_m.update(loss.item()): a sync per step on both sides
        scheduler.step(epoch + 1)
    seconds = time.perf_counter() - start
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, target in val:
            correct += accuracy(model(images), target, topk=(1,))[0].item() * len(target) / 100
            total += len(target)
    return dict(images_per_s=updates * args.batch_size / seconds, train_seconds=seconds, iterations=updates,
                acc1=100.0 * correct / total, loss=loss)


def _run(command: list[str], what: str) -> tuple[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(command[command.index("--threads") + 1]), MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p))
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {what} run failed ({done.returncode}): {' '.join(command)}\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr, (time.perf_counter() - start, _children_cpu() - cpu)


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes: unlike wall time, hardly moved by other
    processes on a shared machine (with one thread a process computes the same whoever else runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(runs: list[tuple[str, dict, tuple[float, float]]]) -> str:
    """One row per run, in their order: training images/s, training seconds, iterations, the whole process's wall
    and CPU seconds (start-up, data, training, evaluation), val Acc@1; then each side's mean and the ratio."""
    rows = [f"{'run':<29}{'train img/s':>12}{'train s':>9}{'iters':>7}{'process s':>11}{'CPU s':>8}{'val Acc@1':>11}"]
    for i, (name, r, (wall, cpu)) in enumerate(runs, 1):
        rows.append(f"{i} {name:<27}{r['images_per_s']:>12.1f}{r['train_seconds']:>9.1f}{r['iterations']:>7d}"
                    f"{wall:>11.1f}{cpu:>8.1f}{r['acc1']:>10.1f}%")
    mean = {side: statistics.mean(r["images_per_s"] for name, r, _ in runs if name == side) for side in SIDES}
    cpu = {side: statistics.mean(p[1] for name, _, p in runs if name == side) for side in SIDES}
    rows.append(f"training images/s (mean of each side's runs): resbone {mean[RESBONE]:.1f}, timm {mean[TIMM]:.1f}; "
                f"resbone / timm: {mean[RESBONE] / mean[TIMM]:.2f}x (> 1.00x: resbone faster)")
    rows.append(f"whole-process CPU seconds, timm / resbone: {cpu[TIMM] / cpu[RESBONE]:.2f}x")
    return "\n".join(rows)


def prepare_data(args, workdir: str) -> str:
    """--data, or the generated textures (seeded) under `workdir`; the root holding train/ and val/."""
    if args.data:
        for split in ("train", "val"):
            if not os.path.isdir(os.path.join(args.data, split)):
                raise ValueError(f"--data {args.data} has no {split}/ folder; give a root with train/<class>/... "
                                 "and val/<class>/...")
        return args.data
    from resbone.classification.data.textures import generate_textures

    root = os.path.join(workdir, "textures")
    generate_textures(root, num_train=args.train_per_class, num_val=args.val_per_class, image_size=args.image_size,
                      seed=0)
    return root


def compare(args) -> str:
    with tempfile.TemporaryDirectory(prefix="bench_classify_") as workdir:
        root = prepare_data(args, workdir)
        data = {split: os.path.join(root, split) for split in ("train", "val")}
        per_epoch = iterations_per_epoch(count_images(data["train"]), args.batch_size)
        runs = []
        for i, side in enumerate(ORDER):
            if side == RESBONE:
                output_dir = os.path.join(workdir, f"resbone_run{i}")
                _, process = _run(resbone_command(args, data, output_dir, per_epoch), "resbone")
                runs.append((side, resbone_result(output_dir, args.batch_size), process))
            else:
                output, process = _run(timm_command(args, root), "timm")
                runs.append((side, parse_result(output), process))
    import torch

    head = (f"{RECIPE['model']} on {count_images(data['train']) if args.data else args.train_per_class * 6} "
            f"training images ({per_epoch} batches of {args.batch_size} per epoch, {args.epochs} epochs) at "
            f"{args.image_size} px, {args.threads} thread(s), torch {torch.__version__}, "
            f"timm {_timm_version()}, CPU")
    return head + "\n" + table(runs)


def parts(args, root: str) -> str:
    """The parts of an iteration, in this process, interleaved (bench.timing): the network's forward + loss +
    backward (both resnet18s with the same weights, one batch) and the loading + augmentation of one batch
    (each side's training set and transform, default_collate)."""
    import torch
    import torch.nn.functional as F
    from timm import create_model as timm_model

    from bench import timing
    from resbone.classification.task import ClassificationTask
    from resbone.factory import create_model
    from resbone.tasks import load_cfg

    torch.set_num_threads(args.threads)
    batch, size = args.batch_size, args.image_size
    mine = create_model(RECIPE["model"], num_classes=6).train()
    theirs = timm_model(RECIPE["model"], num_classes=6).train()
    theirs.load_state_dict(mine.state_dict())  # the same names: torchvision's
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(batch) % 6

    def network(model):
        return lambda: F.cross_entropy(model(images), labels, label_smoothing=RECIPE["smoothing"]).backward()

    command = resbone_command(args, {s: os.path.join(root, s) for s in ("train", "val")}, "unused", per_epoch=1)
    cfg = load_cfg(CONFIG, command[command.index(CONFIG) + 1:])
    sets = {RESBONE: ClassificationTask().build_train_set(cfg), TIMM: _timm_loaders(root, batch, size)[0].dataset}

    def loading(dataset):
        return lambda: torch.utils.data.default_collate([dataset[i % len(dataset)] for i in range(batch)])

    sections = [timing.Section(f"{RECIPE['model']} forward + loss + backward, batch {batch}x3x{size}x{size}", batch,
                               timing.time_interleaved({TIMM: network(theirs), RESBONE: network(mine)}, warmup=2,
                                                       repeats=args.repeats, device=torch.device("cpu"))),
                timing.Section(f"loading + augmentation of {batch} images", batch,
                               timing.time_interleaved({n: loading(d) for n, d in sets.items()}, warmup=1,
                                                       repeats=args.repeats, device=torch.device("cpu")))]
    return timing.section_table(sections, reference=TIMM)


def _timm_version() -> str:
    import timm

    return timm.__version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classify", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="", help="a root with train/ and val/ image folders (default: generated)")
    parser.add_argument("--train-per-class", type=int, default=100, help="generated training images per class")
    parser.add_argument("--val-per-class", type=int, default=30, help="generated validation images per class")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of each run (default 1)")
    parser.add_argument("--quick", action="store_true", help="4 training images per class, 32 px, 1 epoch of "
                        "batch 8 (a smoke test; numbers meaningless)")
    parser.add_argument("--parts", action="store_true", help="instead: the network's forward + backward and the "
                        "loading of a batch, each side's, interleaved in this process")
    parser.add_argument("--repeats", type=int, default=10, help="--parts: timed repeats (medians)")
    parser.add_argument("--run-timm", action="store_true", help=argparse.SUPPRESS)  # the child process's side
    args = parser.parse_args(argv)
    if args.quick:
        args.train_per_class, args.val_per_class, args.epochs, args.batch_size, args.image_size = 4, 2, 1, 8, 32
    for name in ("epochs", "batch_size", "image_size", "threads", "train_per_class", "val_per_class", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.run_timm:
        print(RESULT_TAG + json.dumps(run_timm(args)), flush=True)
        return 0
    if args.parts:
        with tempfile.TemporaryDirectory(prefix="bench_classify_") as workdir:
            print(parts(args, prepare_data(args, workdir)))
        return 0
    print(compare(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
