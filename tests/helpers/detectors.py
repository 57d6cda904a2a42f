"""A stand-in detector for the engine's tests (never shipped): the detector calling convention with a
few hundred parameters, no batch-statistics layer and per-image mean losses, so that one process with
a global batch and several processes splitting it compute the same gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resbone.detection.config import load_cfg


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten())
        self.head = nn.Linear(32, 4 + num_classes)

    def forward(self, images, targets=None):
        out = torch.cat([self.head(self.body(im[None])) for im in images])
        sizes = torch.tensor([[im.shape[-1], im.shape[-2]] * 2 for im in images], dtype=out.dtype)
        boxes = torch.sigmoid(out[:, :4]) * sizes
        if self.training:
            first_box = torch.stack([t["boxes"][0] for t in targets])
            first_label = torch.stack([t["labels"][0] for t in targets]) - 1
            return {"loss_cls": F.cross_entropy(out[:, 4:], first_label),
                    "loss_reg": F.smooth_l1_loss(boxes / sizes, first_box / sizes)}
        probs = out[:, 4:].softmax(-1)
        scores, labels = probs.max(-1)
        return [dict(boxes=b[None], scores=s[None], labels=c[None] + 1) for b, s, c in zip(boxes, scores, labels)]


def tiny_cfg(data_root: str, output_dir: str, *opts: str):
    return load_cfg(None, [
        "MODEL.DEVICE", "cpu", "DATASETS.ROOT", data_root, "DATASETS.TRAIN", "('shapes_train',)",
        "DATASETS.TEST", "('shapes_val',)", "DATASETS.SHAPES.NUM_TRAIN", "8", "DATASETS.SHAPES.NUM_VAL", "4",
        "DATASETS.SHAPES.IMAGE_SIZE", "48", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "7", "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.BASE_LR", "0.05", "SOLVER.STEPS", "(5,)",
        "SOLVER.WARMUP_ITERS", "4", "SOLVER.LOG_PERIOD", "1", "SOLVER.PROGRESS_BAR", "False",
        "SOLVER.TEST_AFTER_TRAIN", "False", "TEST.IMS_PER_BATCH", "2", "OUTPUT_DIR", output_dir, *opts])
