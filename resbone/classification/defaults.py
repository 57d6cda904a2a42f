"""Every config key of the classification task, declared once over the engine's (resbone.engine.defaults).

Anchor: torchvision's `references/classification/train.py` arguments (their defaults where they exist: lr 0.1,
momentum 0.9, weight decay 1e-4, label smoothing 0, mixup / cutmix alpha 0, random erase 0, auto augment
none, val resize 256 / crop 224) and timm's `train.py` (the model's pretrained_cfg gives mean, std,
interpolation and crop_pct when the config leaves them empty). `classification_cfg()` returns a copy.
Reference test: tests/classification/test_task.py.
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

from resbone.engine.defaults import engine_cfg

__all__ = ["AUTO_AUGMENTS", "classification_cfg"]

# INPUT.AUTO_AUGMENT: torchvision.transforms.v2's policies by the reference script's names
AUTO_AUGMENTS = ("", "ta_wide", "ra", "autoaugment", "augmix")

_C = engine_cfg()
_C.TASK = "classification"
# A registered model name (`resbone list`); its classifier gets MODEL.NUM_CLASSES outputs.
_C.MODEL.NAME = "resnet50"
# The pretrained weights of MODEL.NAME (passed to create_model as pretrained=True when the weights package
# provides them); MODEL.WEIGHT is a local file in any dialect instead.
_C.MODEL.PRETRAINED = False
# 0: the number of classes of DATASETS.TRAIN.
_C.MODEL.NUM_CLASSES = 0
# mmdet's frozen_stages: -1 none, 0 the stem, k the stem and the first k stages (no gradient, BN in eval mode).
_C.MODEL.FROZEN_STAGES = -1

_C.DATASETS = CN()
# An ImageFolder root (one sub-folder per class) or a .csv / .txt file of `path,label` lines.
_C.DATASETS.TRAIN = ""
# The sets evaluated, each a folder or a file like TRAIN; their classes must be TRAIN's.
_C.DATASETS.TEST = ()

_C.INPUT = CN()
# Training crop side (RandomResizedCrop); 0: the model's pretrained_cfg input size (224).
_C.INPUT.SIZE = 0
# Evaluation: resize the short side to TEST_SIZE / CROP_PCT, center-crop TEST_SIZE; 0: the pretrained_cfg's.
_C.INPUT.TEST_SIZE = 0
_C.INPUT.CROP_PCT = 0.0
# Normalisation and resize interpolation; empty: the model's pretrained_cfg (ImageNet's mean / std, bilinear).
_C.INPUT.MEAN = ()
_C.INPUT.STD = ()
_C.INPUT.INTERPOLATION = ""
# RandomResizedCrop's area and aspect-ratio ranges (torchvision's defaults).
_C.INPUT.SCALE = (0.08, 1.0)
_C.INPUT.RATIO = (3.0 / 4.0, 4.0 / 3.0)
_C.INPUT.HFLIP_PROB = 0.5
_C.INPUT.AUTO_AUGMENT = ""  # one of AUTO_AUGMENTS
_C.INPUT.RANDOM_ERASE = 0.0
# v2.MixUp / v2.CutMix on each training batch (one of them, at random, when both are > 0).
_C.INPUT.MIXUP_ALPHA = 0.0
_C.INPUT.CUTMIX_ALPHA = 0.0

_C.SOLVER.BASE_LR = 0.1
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.WEIGHT_DECAY_BIAS = 1e-4  # torchvision's reference decays every parameter alike
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.STEPS = ()
_C.SOLVER.IMS_PER_BATCH = 32
_C.SOLVER.LABEL_SMOOTHING = 0.0
# The learning rate of everything but the classifier, as a fraction of BASE_LR (fine-tuning: e.g. 0.1).
_C.SOLVER.BACKBONE_LR_FACTOR = 1.0
_C.TEST.IMS_PER_BATCH = 64


def classification_cfg() -> CN:
    """A fresh copy of every key with its default."""
    return _C.clone()
