"""The baseline's losses: ID (cross entropy with label smoothing), batch-hard triplet, optional center loss.

Anchors: torchreid's `CrossEntropyLoss(label_smooth=True)` (targets (1 - eps) * y + eps / K, which is torch's
`F.cross_entropy(label_smoothing=eps)`), torchreid's `TripletLoss` and fast-reid's `triplet_loss(...,
hard_mining=True)` (Hermans et al. 2017: for every anchor its farthest positive and nearest negative in the
batch, hinge with margin 0.3; margin None is the soft-margin form log(1 + exp(d_ap - d_an))), and
reid-strong-baseline's `CenterLoss` (Wen et al. 2016: squared distance of each embedding to its class
centre, summed over features, averaged over the batch). Reference test: tests/reid/test_losses.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resbone.models._checks import check_int, check_positive_number

__all__ = ["CenterLoss", "ReidCriterion", "TripletLoss", "batch_hard_distances", "pairwise_euclidean"]


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """(N, N) euclidean distances; the clamp keeps sqrt's gradient finite at zero distance (open-reid's form)."""
    squared = x.pow(2).sum(1, keepdim=True)
    return (squared + squared.t() - 2 * x @ x.t()).clamp(min=1e-12).sqrt()


def batch_hard_distances(embedding: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every anchor: the distance to its hardest (farthest) positive and hardest (nearest) negative."""
    distances = pairwise_euclidean(embedding)
    same = targets[:, None] == targets[None, :]
    hardest_positive = distances.masked_fill(~same, float("-inf")).amax(1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(1)
    return hardest_positive, hardest_negative


class TripletLoss(nn.Module):
    """Batch-hard triplet loss: mean(relu(d_ap - d_an + margin)); margin=None: mean(softplus(d_ap - d_an)).

    Every identity of the batch needs a second image and another identity (a PK batch: P >= 2, K >= 2)."""

    def __init__(self, margin: float | None = 0.3) -> None:
        super().__init__()
        if margin is not None:
            check_positive_number("margin", margin, " or None (the soft-margin form)")
        self.margin = margin

    def forward(self, embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(targets - targets.min())
        if counts.numel() < 2 or bool((counts == 1).any()):
            raise ValueError(f"the triplet loss needs at least two identities and two images of each identity in a "
                             f"batch, got identity counts {counts[counts > 0].tolist()}; sample with PKSampler")
        positive, negative = batch_hard_distances(embedding, targets)
        if self.margin is None:
            return F.softplus(positive - negative).mean()
        return F.relu(positive - negative + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class CenterLoss(nn.Module):
    """Center loss: sum over features of (x - c_y)^2, averaged over the batch; the centres are parameters
    (the baseline gives them their own SGD, lr 0.5, and weights the loss by 0.0005)."""

    def __init__(self, num_classes: int, num_features: int) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_int("num_features", num_features)
        self.centers = nn.Parameter(torch.randn(num_classes, num_features))

    def forward(self, embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # the baseline clamps every distance to [1e-12, 1e12] before summing
        return (embedding - self.centers[targets]).pow(2).sum(1).clamp(1e-12, 1e12).mean()


class ReidCriterion(nn.Module):
    """The baseline's total loss: ID (label smoothing) + triplet (+ center_weight * center), returned as a dict
    of named terms (their sum is the loss to back-propagate)."""

    def __init__(self, num_classes: int, num_features: int, *, label_smoothing: float = 0.1,
                 margin: float | None = 0.3, center_weight: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if center_weight < 0:
            raise ValueError(f"center_weight must be >= 0 (0 turns the center loss off), got {center_weight!r}")
        self.label_smoothing = float(label_smoothing)
        self.triplet = TripletLoss(margin)
        self.center_weight = float(center_weight)
        self.center = CenterLoss(num_classes, num_features) if center_weight > 0 else None

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {"loss_id": F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing),
                  "loss_triplet": self.triplet(embedding, targets)}
        if self.center is not None:
            losses["loss_center"] = self.center_weight * self.center(embedding, targets)
        return losses
