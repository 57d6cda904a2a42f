"""Every config key of the re-id task, declared once over the engine's (resbone.engine.defaults).

Anchor: reid-strong-baseline's `config/defaults.py` and its `softmax_triplet.yml` (Adam, BASE_LR 3.5e-4,
WEIGHT_DECAY and WEIGHT_DECAY_BIAS 5e-4, BIAS_LR_FACTOR 1, warm-up from 0.1, steps x0.1; SIZE_TRAIN 256x128,
PADDING 10, PROB 0.5, RE_PROB 0.5; IMS_PER_BATCH 64 with NUM_INSTANCE 4; MARGIN 0.3; label smoothing on;
LAST_STRIDE 1; NECK bnneck, TEST.NECK_FEAT after) and fast-reid's `Base-bagtricks.yml` (GeM pooling on
IBN-a backbones). resbone's names: MODEL.NAME a registered backbone, DATALOADER.NUM_INSTANCE K, the P of a
P x K batch is SOLVER.IMS_PER_BATCH / K. The schedule counts iterations, as every resbone task does.
`reid_cfg()` returns a copy. Reference test: tests/reid/test_task.py.
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

from resbone.engine.defaults import engine_cfg

__all__ = ["reid_cfg"]

_C = engine_cfg()
_C.TASK = "reid"
# A registered backbone (`resbone list`); its classifier is replaced by the pooling, the BNNeck and an ID classifier.
_C.MODEL.NAME = "resnet50_ibn_a"
# The published ImageNet weights of MODEL.NAME (resbone.weights); MODEL.WEIGHT is a local backbone file instead
# (any dialect resbone.convert reads, e.g. IBN-Net's resnet50_ibn_a-d9d0bb7b.pth).
_C.MODEL.PRETRAINED = False
# 1: layer4 keeps 1/16 of the input (the baseline's trick); 2: the backbone's own stride 32.
_C.MODEL.LAST_STRIDE = 1
# Width of the first stage (ResNet base_channels); 0: the model's own (64). Small widths make tiny demo models.
_C.MODEL.BASE_CHANNELS = 0
_C.MODEL.POOLING = "gem"  # "gem" (fast-reid's GeneralizedMeanPooling) or "avg"
_C.MODEL.GEM_P = 3.0
# The BNNeck: BatchNorm1d (bias frozen) between the embedding and a bias-free classifier; off for the ablation.
_C.MODEL.BNNECK = True

_C.DATASETS = CN()
# A Market-1501-style folder (bounding_box_train, query, bounding_box_test) whose training split is learned.
_C.DATASETS.TRAIN = ""
# The folders evaluated, each on its query and bounding_box_test (usually TRAIN's own folder).
_C.DATASETS.TEST = ()
_C.DATASETS.NAMING = "market1501"  # the file naming: "market1501" or "dukemtmc"

_C.DATALOADER.NUM_INSTANCE = 4  # K images of each identity in a batch

_C.INPUT = CN()
_C.INPUT.SIZE = (256, 128)  # (height, width) in training and evaluation
_C.INPUT.HFLIP_PROB = 0.5
_C.INPUT.PADDING = 10  # pad, then random crop back to SIZE
_C.INPUT.RANDOM_ERASE = 0.5

_C.SOLVER.OPTIMIZER = "Adam"
_C.SOLVER.BASE_LR = 3.5e-4
_C.SOLVER.WEIGHT_DECAY = 5e-4
_C.SOLVER.WEIGHT_DECAY_BIAS = 5e-4
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.WARMUP_FACTOR = 0.1
_C.SOLVER.WARMUP_ITERS = 2021  # 10 epochs of Market-1501 (12,936 training images / 64)
_C.SOLVER.STEPS = (8085, 14149)  # epochs 40 and 70
_C.SOLVER.MAX_ITER = 24255  # 120 epochs
_C.SOLVER.IMS_PER_BATCH = 64  # P x K: 16 identities x 4 images
_C.SOLVER.CHECKPOINT_PERIOD = 2021
_C.SOLVER.LABEL_SMOOTHING = 0.1
# Batch-hard triplet margin; 0: the soft-margin form log(1 + exp(d_ap - d_an)).
_C.SOLVER.MARGIN = 0.3
# The center loss's weight (the baseline's 0.0005); 0 turns it off. Its centres learn in the engine's optimizer at
# BASE_LR * CENTER_LR_FACTOR (the baseline gives them their own SGD at lr 0.5).
_C.SOLVER.CENTER_LOSS_WEIGHT = 0.0
_C.SOLVER.CENTER_LR_FACTOR = 1.0

_C.TEST.IMS_PER_BATCH = 128
_C.TEST.METRIC = "euclidean"  # "euclidean" (squared, torchreid's) or "cosine"
_C.TEST.RERANK = False  # k-reciprocal re-ranking, k1=20, k2=6, lambda 0.3
# Queries drawn in OUTPUT_DIR/ranked_<set>.png with their top 10 (green right, red wrong); 0: no picture.
_C.TEST.RANKED_QUERIES = 8


def reid_cfg() -> CN:
    """A fresh copy of every key with its default."""
    return _C.clone()
