"""The FCOS detector: transform -> backbone -> FPN -> head -> losses or detections; `build_detector`.

Anchors: FCOS's `GeneralizedRCNN` + `FCOSModule` (what `tools/train_net.py` builds from a config) and
torchvision's `models/detection/fcos.py` `FCOS.forward` (list of RGB 0..1 images in; dict of losses
in training, list of dicts of boxes / scores / labels in input pixels in evaluation).
Reference test: tests/detection/test_torchvision_equality.py (torchvision fcos_resnet50_fpn converted
into this model gives the same head outputs and detections).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from resbone.detection.backbone import build_fcos_backbone
from resbone.detection.defaults import require_keys
from resbone.detection.fcos import (
    FCOSHead,
    assign_targets,
    check_iou_loss_type,
    compute_locations,
    fcos_losses,
    postprocess_detections,
)
from resbone.detection.fpn import FPN
from resbone.detection.transform import DetectionTransform
from resbone.layers.norm import is_batch_norm
from resbone.utils.checks import check_choice

__all__ = ["FCOS", "build_detector"]

PYRAMID_STRIDES = (8, 16, 32)  # C3, C4, C5: what the FPN takes from the backbone
LOCATION_OFFSETS = ("half_stride", "zero")
SCORE_TH_ON = ("cls", "sqrt_cls_ctr")
REG_LOSS_WEIGHTINGS = ("centerness", "none")


def _pyramid_indices(backbone: nn.Module) -> tuple[int, ...]:
    """Which of the backbone's outputs are C3, C4, C5 (by stride, from its feature_info)."""
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise TypeError(f"the FCOS backbone {type(backbone).__name__} has no feature_info; it must be a "
                        "resbone backbone (num_classes=None) listing channels and stride of each output")
    strides = [int(i["stride"]) for i in info]
    missing = [s for s in PYRAMID_STRIDES if s not in strides]
    if missing:
        raise ValueError(f"the FCOS backbone must output maps at strides {PYRAMID_STRIDES} (C3-C5); its "
                         f"outputs have strides {strides} (missing {missing})")
    return tuple(strides.index(s) for s in PYRAMID_STRIDES)


class FCOS(nn.Module):
    """FCOS (Tian et al., ICCV 2019) over any resbone backbone.

    forward(images, targets=None): images is a list of float tensors [3, H, W] (RGB, 0..1); targets a
    list of dict(boxes=[N, 4] xyxy in input pixels, labels=[N] int64 in 1..C). Training returns
    {'loss_cls', 'loss_reg', 'loss_centerness'}; evaluation a list of dict(boxes, scores, labels).
    """

    def __init__(self, backbone: nn.Module, fpn: FPN, head: FCOSHead, transform: DetectionTransform, *,
                 location_offset: str = "half_stride", sizes_of_interest: Sequence[Sequence[float]] = (
                     (-1, 64), (64, 128), (128, 256), (256, 512), (512, 100000000.0)),
                 center_sampling_radius: float = 0.0, iou_loss_type: str = "iou", loss_alpha: float = 0.25,
                 loss_gamma: float = 2.0, reg_loss_weighting: str = "centerness", score_thresh: float = 0.05,
                 score_th_on: str = "cls", pre_nms_top_n: int = 1000, nms_thresh: float = 0.6,
                 detections_per_img: int = 100):
        super().__init__()
        check_choice("MODEL.FCOS.LOCATION_OFFSET", location_offset, LOCATION_OFFSETS)
        check_iou_loss_type(iou_loss_type)
        check_choice("MODEL.FCOS.SCORE_TH_ON", score_th_on, SCORE_TH_ON)
        check_choice("MODEL.FCOS.REG_LOSS_WEIGHTING", reg_loss_weighting, REG_LOSS_WEIGHTINGS)
        if len(sizes_of_interest) != len(head.strides):
            raise ValueError(f"MODEL.FCOS.SIZES_OF_INTEREST needs one [low, high] per level of FPN_STRIDES "
                             f"{head.strides}, got {list(sizes_of_interest)!r}")
        self.backbone = backbone
        self.fpn = fpn
        self.head = head
        self.transform = transform
        self.feature_indices = _pyramid_indices(backbone)
        self.num_classes = head.num_classes
        self.strides = head.strides
        self.location_offset = location_offset
        self.sizes_of_interest = [tuple(float(v) for v in r) for r in sizes_of_interest]
        self.center_sampling_radius = float(center_sampling_radius)
        self.iou_loss_type = iou_loss_type
        self.loss_alpha, self.loss_gamma = float(loss_alpha), float(loss_gamma)
        self.reg_loss_weighting = reg_loss_weighting
        self.score_thresh, self.score_th_on = float(score_thresh), score_th_on
        self.pre_nms_top_n, self.nms_thresh = int(pre_nms_top_n), float(nms_thresh)
        self.detections_per_img = int(detections_per_img)

    def forward_network(self, batch: torch.Tensor):
        """Backbone, FPN and head on a batched, normalized tensor: (logits, regression, centerness)
        lists over the pyramid levels, as FCOSHead.forward returns them."""
        features = self.backbone(batch)
        pyramid = self.fpn([features[i] for i in self.feature_indices])
        return self.head(pyramid)

    def locations(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return compute_locations([tuple(o.shape[-2:]) for o in outputs], self.strides,
                                 offset=self.location_offset, device=outputs[0].device)

    def forward(self, images: Sequence[torch.Tensor], targets: Optional[Sequence[dict]] = None):
        self._check_inputs(images, targets)
        original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch, image_sizes, targets = self.transform(images, targets if self.training else None)
        if batch.shape[0] == 1:
            self._check_single_image(batch, original_sizes[0])
        # Losses and decoding in float32 also under autocast (exp / IoU / box coordinates overflow fp16).
        logits, regression, centerness = ([o.float() for o in outputs] for outputs in self.forward_network(batch))
        locations = self.locations(logits)
        if self.training:
            return self.losses(logits, regression, centerness, locations, targets)
        detections = postprocess_detections(
            logits, regression, centerness, locations, image_sizes, score_thresh=self.score_thresh,
            score_th_on=self.score_th_on, pre_nms_top_n=self.pre_nms_top_n, nms_thresh=self.nms_thresh,
            detections_per_img=self.detections_per_img)
        return self.transform.postprocess(detections, image_sizes, original_sizes)

    def losses(self, logits, regression, centerness, locations, targets) -> dict:
        """Assign targets per image and compute FCOS's losses over the whole batch."""
        labels, reg_targets = zip(*(assign_targets(
            locations, t["boxes"].to(regression[0].dtype), t["labels"], strides=self.strides,
            sizes_of_interest=self.sizes_of_interest, center_sampling_radius=self.center_sampling_radius)
            for t in targets))

        def flat(outputs, channels):  # per level [N, ch, H, W] -> [N * P, ch], image-major
            return torch.cat([o.flatten(2) for o in outputs], dim=2).transpose(1, 2).reshape(-1, channels)

        return fcos_losses(flat(logits, self.num_classes), flat(regression, 4), flat(centerness, 1).squeeze(1),
                           torch.cat(labels), torch.cat(reg_targets), iou_loss_type=self.iou_loss_type,
                           alpha=self.loss_alpha, gamma=self.loss_gamma, reg_weighting=self.reg_loss_weighting)

    def _check_single_image(self, batch: torch.Tensor, original_size: tuple[int, int]) -> None:
        """BatchNorm in training, and GroupNorm with one channel per group always, need more than one value per
        channel; one image whose deepest map is 1x1 gives them one, and torch's own error ('Expected more than
        1 value per channel') names neither the image size nor the way out."""
        height, width = int(batch.shape[-2]), int(batch.shape[-1])
        backbone_stride = max(int(info["stride"]) for info in self.backbone.feature_info)
        for part, stride in ((self.backbone, backbone_stride), (self.head, max(self.strides))):
            if math.ceil(height / stride) * math.ceil(width / stride) > 1:
                continue
            norm = next((m for m in part.modules() if _needs_two_values_per_channel(m)), None)
            if norm is not None:
                raise ValueError(
                    f"FCOS on one image of {original_size[0]}x{original_size[1]} (resized and padded to "
                    f"{height}x{width}) gives a 1x1 map at stride {stride}, where the {type(norm).__name__} "
                    f"layers of its {'backbone' if part is self.backbone else 'head'} have one value per channel: "
                    f"the minimum is {stride + 1} px on at least one side after resizing (INPUT.MIN_SIZE_*, "
                    f"MAX_SIZE_*), or 2 images per batch, or frozen norms (FrozenBN, norm_eval=True) or "
                    f"GroupNorm with 2+ channels per group")

    def _check_inputs(self, images, targets) -> None:
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError(f"FCOS expects a non-empty list of image tensors [3, H, W], got {type(images).__name__}")
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"image {i} must be a float tensor [3, H, W] (RGB, 0..1), got {shape}")
            if not image.is_floating_point():
                raise TypeError(f"image {i} must be a float tensor with values in 0..1, got dtype {image.dtype}")
        if not self.training:
            return
        if targets is None:
            raise ValueError("FCOS in training mode needs targets: a list of dict(boxes=[N, 4], labels=[N]), "
                             "one per image (call model.eval() for detections)")
        if len(targets) != len(images):
            raise ValueError(f"got {len(images)} images but {len(targets)} targets; give one target dict per image")
        for i, target in enumerate(targets):
            if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
                raise KeyError(f"target {i} must be a dict with 'boxes' and 'labels', got "
                               f"{sorted(target) if isinstance(target, dict) else type(target).__name__}")
            boxes, labels = target["boxes"], target["labels"]
            if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"target {i} boxes must be a float tensor [N, 4] (x1, y1, x2, y2), got "
                                 f"{tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__}")
            if not isinstance(labels, torch.Tensor) or labels.shape != boxes.shape[:1] or labels.is_floating_point():
                raise ValueError(f"target {i} labels must be an int64 tensor [N] matching {boxes.shape[0]} boxes")
            if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > self.num_classes):
                raise ValueError(f"target {i} labels must lie in 1..{self.num_classes} (0 is background), got "
                                 f"values {int(labels.min())}..{int(labels.max())}")
            bad = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
            if bad.any():
                raise ValueError(f"target {i} has a box with non-positive width or height: "
                                 f"{boxes[bad][0].tolist()} (boxes are x1, y1, x2, y2 with x2 > x1, y2 > y1)")


def _needs_two_values_per_channel(module: nn.Module) -> bool:
    return (is_batch_norm(module) and module.training) or (
        isinstance(module, nn.GroupNorm) and module.num_groups == module.num_channels)


def _min_size_train(inp) -> tuple[int, ...]:
    """FCOS's build_transforms: MIN_SIZE_RANGE_TRAIN (lo, hi) other than (-1, -1) means every shorter
    side lo..hi inclusive, and overrides MIN_SIZE_TRAIN."""
    low_high = tuple(inp.MIN_SIZE_RANGE_TRAIN)
    if not low_high or low_high[0] == -1:
        sizes = inp.MIN_SIZE_TRAIN
        return tuple(sizes) if isinstance(sizes, (list, tuple)) else (sizes,)
    if len(low_high) != 2 or not all(isinstance(v, int) for v in low_high) or not 0 < low_high[0] <= low_high[1]:
        raise ValueError(f"INPUT.MIN_SIZE_RANGE_TRAIN must be (-1, -1) (use MIN_SIZE_TRAIN) or two ints "
                         f"0 < low <= high, e.g. (640, 800), got {low_high!r}")
    return tuple(range(low_high[0], low_high[1] + 1))


def build_detector(cfg, backbone: Optional[nn.Module] = None) -> FCOS:
    """FCOS from a config holding every key of resbone.detection.defaults (`detector_cfg()` or the engine's
    `get_cfg()`, with your values). `backbone` overrides MODEL.BACKBONE.CONV_BODY (any resbone backbone
    with num_classes=None whose feature_info has strides 8, 16 and 32)."""
    require_keys(cfg, "MODEL.FCOS", "MODEL.FPN", "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "MODEL.RETINANET.USE_C5",
                 "INPUT", "DATALOADER.SIZE_DIVISIBILITY", "TEST.DETECTIONS_PER_IMG", "TEST.BBOX_AUG.ENABLED",
                 reader="build_detector")
    fcos, inp = cfg.MODEL.FCOS, cfg.INPUT
    if cfg.MODEL.FPN.USE_GN or cfg.MODEL.FPN.USE_RELU:
        raise ValueError("MODEL.FPN.USE_GN / USE_RELU are not supported by resbone's FPN (FCOS's configs "
                         "leave both False); set them to False")
    if not isinstance(fcos.NUM_CLASSES, int) or fcos.NUM_CLASSES < 2:
        raise ValueError(f"MODEL.FCOS.NUM_CLASSES counts the background (81 for COCO) and must be an int "
                         f">= 2, got {fcos.NUM_CLASSES!r}")
    strides = tuple(int(s) for s in fcos.FPN_STRIDES)
    if strides[:3] != PYRAMID_STRIDES or len(strides) not in (3, 4, 5) or any(
            b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(f"MODEL.FCOS.FPN_STRIDES must start 8, 16, 32 and double per level, 3 to 5 levels "
                         f"(FCOS: [8, 16, 32, 64, 128]), got {list(fcos.FPN_STRIDES)!r}")
    if backbone is None:
        backbone = build_fcos_backbone(cfg)
    indices = _pyramid_indices(backbone)
    in_channels = [int(backbone.feature_info[i]["channels"]) for i in indices]
    out_channels = int(cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS)
    fpn = FPN(in_channels, out_channels, num_extra_levels=len(strides) - 3,
              extra_from_c5=bool(cfg.MODEL.RETINANET.USE_C5))
    dcn = None
    if fcos.USE_DCN_IN_TOWER:
        dcn = dict(type=fcos.DCN_TYPE, deform_groups=1)
    head = FCOSHead(out_channels, fcos.NUM_CLASSES - 1, strides=strides, num_convs=int(fcos.NUM_CONVS),
                    prior_prob=float(fcos.PRIOR_PROB), centerness_on_reg=bool(fcos.CENTERNESS_ON_REG),
                    norm_reg_targets=bool(fcos.NORM_REG_TARGETS), dcn=dcn)
    if cfg.TEST.BBOX_AUG.ENABLED:
        raise ValueError("TEST.BBOX_AUG.ENABLED (test-time augmentation) is not supported by resbone's FCOS; "
                         "set it to False")
    transform = DetectionTransform(
        min_size_train=_min_size_train(inp), max_size_train=inp.MAX_SIZE_TRAIN, min_size_test=inp.MIN_SIZE_TEST,
        max_size_test=inp.MAX_SIZE_TEST, pixel_mean=list(inp.PIXEL_MEAN), pixel_std=list(inp.PIXEL_STD),
        to_bgr255=bool(inp.TO_BGR255), size_divisibility=int(cfg.DATALOADER.SIZE_DIVISIBILITY))
    return FCOS(backbone, fpn, head, transform, location_offset=fcos.LOCATION_OFFSET,
                sizes_of_interest=list(fcos.SIZES_OF_INTEREST)[:len(strides)],
                center_sampling_radius=float(fcos.CENTER_SAMPLING_RADIUS), iou_loss_type=fcos.IOU_LOSS_TYPE,
                loss_alpha=float(fcos.LOSS_ALPHA), loss_gamma=float(fcos.LOSS_GAMMA),
                reg_loss_weighting=fcos.REG_LOSS_WEIGHTING, score_thresh=float(fcos.INFERENCE_TH),
                score_th_on=fcos.SCORE_TH_ON, pre_nms_top_n=int(fcos.PRE_NMS_TOP_N), nms_thresh=float(fcos.NMS_TH),
                detections_per_img=int(cfg.TEST.DETECTIONS_PER_IMG))
