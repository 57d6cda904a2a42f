"""The config keys the engine reads, for every task: the loop, solver, checkpoints, EMA, AMP, devices, output.

Anchor: detectron2's `config/defaults.py` and FCOS's `fcos_core/config/defaults.py` (whose SOLVER, TEST,
DATALOADER and MODEL.DEVICE / WEIGHT keys these are, with FCOS's defaults); each task's tree starts from
`engine_cfg()` and adds its own keys (resbone.detection.defaults, resbone.classification.defaults).
Reference tests: tests/detection/test_config.py (FCOS's YAML files load), tests/classification/test_task.py.
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

__all__ = ["engine_cfg"]

_C = CN()
# Which task a config is for; a task's tree sets its own name (FCOS's YAML files have none: detection).
_C.TASK = ""

_C.MODEL = CN()
_C.MODEL.DEVICE = "cuda"
_C.MODEL.WEIGHT = ""  # a local file, FCOS's `catalog://` name or a URL (resbone.weights fetches it once)
_C.MODEL.USE_SYNCBN = False
# torch.compile the model's network in training and evaluation (issue 11); off: eager.
_C.MODEL.COMPILE = False
# channels_last memory format for the model and its batches, where it speeds convs up; off: NCHW.
_C.MODEL.CHANNELS_LAST = False

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4

_C.SOLVER = CN()
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
# FCOS writes 2 and 0 (ints); stored as floats so that `WEIGHT_DECAY_BIAS 1e-4` is not a type error.
_C.SOLVER.BIAS_LR_FACTOR = 2.0
_C.SOLVER.DCONV_OFFSETS_LR_FACTOR = 1.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 0.0005
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3
_C.SOLVER.WARMUP_ITERS = 500
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 2500
_C.SOLVER.IMS_PER_BATCH = 16  # global: split over the processes
# Mixed precision (autocast; a gradient scaler with float16 on CUDA); off: float32, as FCOS.
_C.SOLVER.AMP = False
# The autocast dtype when AMP is on: 'auto' = float16 on CUDA, bfloat16 on the CPU; or 'bfloat16' / 'float16'.
_C.SOLVER.AMP_DTYPE = "auto"
# Gradient-norm clipping for from-scratch runs that spike; 0 = no clipping (FCOS has none).
_C.SOLVER.CLIP_GRAD_NORM = 0.0
# Iterations between log lines / metrics.jsonl records.
_C.SOLVER.LOG_PERIOD = 20
# Evaluate on the test sets when training ends (FCOS's train_net.py does, unless --skip-test).
_C.SOLVER.TEST_AFTER_TRAIN = True
# A tqdm bar with ETA and losses on the main process when stderr is a terminal (log lines otherwise).
_C.SOLVER.PROGRESS_BAR = True
# Short from-scratch schedules converge in fewer iterations with AdamW and a cosine decay (detectron2's
# WarmupCosineLR, down to BASE_LR_END); FCOS: SGD with WarmupMultiStepLR.
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.BASE_LR_END = 0.0

_C.TEST = CN()
_C.TEST.IMS_PER_BATCH = 8  # global, as SOLVER.IMS_PER_BATCH
# Evaluate every EVAL_PERIOD iterations during training too (detectron2's TEST.EVAL_PERIOD); 0: only at the end.
_C.TEST.EVAL_PERIOD = 0

_C.OUTPUT_DIR = "."
# Reproducible runs: seeds torch, the data order and the random augmentations.
_C.SEED = 0
# An exponential moving average of the weights, evaluated and saved beside them (d2go's MODEL_EMA); the
# decay ramps up as min(DECAY, (1 + n) / (10 + n)) after n steps. Off: FCOS.
_C.MODEL_EMA = CN()
_C.MODEL_EMA.ENABLED = False
_C.MODEL_EMA.DECAY = 0.999


def engine_cfg() -> CN:
    """A fresh copy of the engine's keys with their defaults."""
    return _C.clone()
