"""The re-id baseline's network: a backbone, GeM or average pooling, and the BNNeck.

Anchors: reid-strong-baseline's `modeling/baseline.py` (Luo et al., "Bag of Tricks and a Strong Baseline for
Deep Person Re-identification", 2019) and fast-reid's `EmbeddingHead` (pool, BatchNorm1d whose bias is frozen,
a bias-free Linear classifier; NECK_FEAT 'before'). In training the model returns the classifier's logits
(for the ID loss) and the pooled embedding BEFORE the BN (for the triplet loss); in eval mode it returns the
embedding AFTER the BN, which is what the baseline ranks with. Initialisation as the baseline's
`weights_init_kaiming` / `weights_init_classifier`: BN weight 1, bias 0; classifier normal(std=0.001).
Without the BNNeck (the ablation) the classifier has a bias and both outputs are the pooled embedding.
Reference test: tests/reid/test_model.py (fast-reid's EmbeddingHead and GeneralizedMeanPooling with the same
weights: equal logits, embeddings and gradients).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resbone.factory import create_model
from resbone.models._checks import check_choice, check_int, check_positive_number

__all__ = ["GeneralizedMeanPooling", "ReidModel", "ReidOutput"]

POOLINGS = ("gem", "avg")


class ReidOutput(NamedTuple):
    """What ReidModel returns in training mode."""

    logits: torch.Tensor  # (N, num_classes), for the ID (cross-entropy) loss
    embedding: torch.Tensor  # (N, C), the pooled features before the BNNeck, for the triplet / center loss


class GeneralizedMeanPooling(nn.Module):
    """GeM (Radenovic et al. 2018): (mean(clamp(x, eps) ** p)) ** (1 / p) over the map; p=1 is average pooling,
    p -> inf max pooling. `trainable=True` learns p (fast-reid's GeneralizedMeanPoolingP)."""

    def __init__(self, p: float = 3.0, *, eps: float = 1e-6, trainable: bool = False) -> None:
        super().__init__()
        check_positive_number("p", p)
        self.eps = eps
        self.p = nn.Parameter(torch.tensor(float(p))) if trainable else float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={float(self.p):g}, eps={self.eps:g}"


def _build_backbone(name: str, last_stride: int | None, checkpoint: Any, kwargs: dict[str, Any]) -> nn.Module:
    if last_stride is not None:
        kwargs = dict(kwargs, last_stride=last_stride)
    try:
        return create_model(name, num_classes=None, checkpoint=checkpoint, **kwargs)
    except TypeError as error:
        if "last_stride" not in str(error):
            raise
        raise TypeError(f"{name} has no last_stride option (the ResNet family has); pass last_stride=None") from None


class ReidModel(nn.Module):
    """`backbone` (a registered model name, or a module with `forward_features` and `num_features`), pooled by
    `pooling` ('gem' or 'avg'), then the BNNeck and a `num_classes`-way classifier.

    last_stride=1 (the baseline's trick) keeps layer4 at 1/16 of the input; None leaves the backbone's own.
    `checkpoint` (any dialect resbone.convert reads, e.g. an ImageNet or IBN-Net file) loads into the backbone;
    `backbone_kwargs` go to resbone.create_model."""

    is_embedding = True  # in eval mode it returns the re-id descriptor: resbone.deploy.onnx names that output so

    def __init__(self, num_classes: int, backbone: str | nn.Module = "resnet50_ibn_a", *, pooling: str = "gem",
                 gem_p: float = 3.0, last_stride: int | None = 1, bnneck: bool = True,
                 checkpoint: str | os.PathLike | Mapping[str, Any] | None = None, **backbone_kwargs: Any) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 2)  # the ID loss needs two identities at least
        check_choice("pooling", pooling, POOLINGS)
        if isinstance(backbone, str):
            backbone = _build_backbone(backbone, last_stride, checkpoint, backbone_kwargs)
        elif checkpoint is not None or backbone_kwargs:
            raise ValueError(f"checkpoint and backbone keywords apply to a backbone built by name; load them into "
                             f"your {type(backbone).__name__} before passing it")
        elif not (hasattr(backbone, "forward_features") and isinstance(getattr(backbone, "num_features", None), int)):
            raise TypeError(f"backbone must be a registered model name (resbone.list_models()) or a module with "
                            f"forward_features() and an int num_features, got {type(backbone).__name__}")
        self.backbone = backbone
        self.num_features = backbone.num_features
        self.pool = GeneralizedMeanPooling(gem_p) if pooling == "gem" else nn.AdaptiveAvgPool2d(1)
        self.bnneck = bool(bnneck)
        if self.bnneck:
            self.bottleneck = nn.BatchNorm1d(self.num_features)
            self.bottleneck.bias.requires_grad_(False)  # the BNNeck's shift is frozen (Luo et al. sec. 3.6)
            nn.init.ones_(self.bottleneck.weight)
            nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(self.num_features, self.num_classes, bias=not self.bnneck)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled embedding (N, C) before the BNNeck."""
        return torch.flatten(self.pool(self.backbone.forward_features(images)), 1)

    def forward(self, images: torch.Tensor) -> ReidOutput | torch.Tensor:
        """Training: ReidOutput(logits, embedding before the BN). Eval: the embedding after the BN (N, C)."""
        embedding = self.embed(images)
        neck = self.bottleneck(embedding) if self.bnneck else embedding
        if not self.training:
            return neck
        return ReidOutput(self.classifier(neck), embedding)
