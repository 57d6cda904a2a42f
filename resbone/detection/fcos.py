"""The FCOS head, its target assignment, its losses and its post-processing.

Anchors: tianzhi0549/FCOS `fcos_core/modeling/rpn/fcos/{fcos.py, loss.py, inference.py}` (the
"imprv" options: centerness on the regression branch, center sampling, GIoU, normalized regression
targets) and torchvision's `models/detection/fcos.py` (the same model with other defaults).
Where the two differ, resbone follows FCOS by default and offers torchvision's choice through a
config key (see resbone/detection/defaults.py).

Deliberate differences from FCOS's code: IoU / GIoU come from torchvision's box ops (no "+1"
smoothing of the IoU), boxes are clipped to [0, W] x [0, H] (torchvision's clip, not W-1), and
TEST.DETECTIONS_PER_IMG keeps exactly the top-k after NMS (no ties beyond it). Regression outputs are
pixel distances in training and evaluation: the IoU losses are scale-invariant, so this equals
FCOS's stride-normalized training targets.
Reference tests: tests/detection/test_fcos_head.py, test_targets_loss.py (hand-computed targets
and losses), test_torchvision_equality.py (head outputs and detections against torchvision).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image, generalized_box_iou_loss, sigmoid_focal_loss

from resbone.utils.checks import check_choice
from resbone.utils.distributed import reduce_mean

__all__ = ["FCOSHead", "IOU_LOSS_TYPES", "Scale", "assign_targets", "centerness_targets", "check_iou_loss_type",
           "compute_locations", "fcos_losses", "iou_loss", "postprocess_detections"]

IOU_LOSS_TYPES = ("iou", "linear_iou", "giou")
INF = 100000000.0  # FCOS's "no box" area and open upper size bound


class Scale(nn.Module):
    """One learnable scalar multiplying a level's regression output (FCOS's `Scale`)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _tower(in_channels: int, num_convs: int, dcn: Optional[dict]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(num_convs):
        if dcn is not None and i == num_convs - 1:
            # FCOS puts its deformable conv (DFConv2d) only in the last conv of each tower.
            from resbone.layers.conv import build_conv2d

            conv = build_conv2d(dcn, in_channels, in_channels, 3, stride=1, padding=1, dilation=1,
                                groups=1, bias=True)
        else:
            conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        layers += [conv, nn.GroupNorm(32, in_channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Shared FCOS head: a classification and a regression tower of `num_convs` x (conv3x3, GN(32),
    ReLU), then `cls_logits`, `bbox_pred` and `centerness` (3x3 convs) and one `Scale` per level.

    Args:
        in_channels: channels of every pyramid level (a multiple of 32, for GroupNorm(32)).
        num_classes: foreground classes C (FCOS's NUM_CLASSES - 1).
        strides: the pyramid levels' strides (FCOS's FPN_STRIDES), one Scale per level.
        centerness_on_reg: centerness from the regression tower (FCOS imprv, torchvision).
        norm_reg_targets: regression = relu(scale * x) * stride (FCOS imprv, torchvision);
            otherwise exp(scale * x) (FCOS's original).
        dcn: a `resbone.layers.conv.build_conv2d` config for the last tower conv, or None.

    forward(features) returns three lists (one entry per level): class logits [N, C, H, W],
    regression (l, t, r, b) in input pixels [N, 4, H, W], centerness logits [N, 1, H, W].
    """

    def __init__(self, in_channels: int, num_classes: int, *, strides: Sequence[int] = (8, 16, 32, 64, 128),
                 num_convs: int = 4, prior_prob: float = 0.01, centerness_on_reg: bool = False,
                 norm_reg_targets: bool = False, dcn: Optional[dict] = None):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"FCOSHead num_classes (foreground classes) must be an int >= 1, got {num_classes!r}")
        if in_channels % 32:
            raise ValueError(f"FCOSHead in_channels must be a multiple of 32 for GroupNorm(32), got {in_channels}")
        if not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f"MODEL.FCOS.NUM_CONVS must be an int >= 0, got {num_convs!r}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"MODEL.FCOS.PRIOR_PROB must be strictly between 0 and 1, got {prior_prob!r}")
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in strides)
        self.centerness_on_reg = centerness_on_reg
        self.norm_reg_targets = norm_reg_targets
        self.cls_tower = _tower(in_channels, num_convs, dcn)
        self.bbox_tower = _tower(in_channels, num_convs, dcn)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        convs = [m for m in (*self.cls_tower, *self.bbox_tower) if not isinstance(m, (nn.GroupNorm, nn.ReLU))]
        for conv in (*convs, self.cls_logits, self.bbox_pred, self.centerness):
            # A deformable conv's own `conv_offset` keeps its zero init (it starts as the plain conv).
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        # Focal-loss prior (RetinaNet): every location starts at probability prior_prob.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)

    def forward(self, features: Sequence[torch.Tensor]):
        if len(features) != len(self.strides):
            raise ValueError(f"FCOSHead expects {len(self.strides)} pyramid levels (strides {self.strides}), "
                             f"got {len(features)}")
        logits, regression, centerness = [], [], []
        for level, feature in enumerate(features):
            cls_feature = self.cls_tower(feature)
            reg_feature = self.bbox_tower(feature)
            logits.append(self.cls_logits(cls_feature))
            centerness.append(self.centerness(reg_feature if self.centerness_on_reg else cls_feature))
            reg = self.scales[level](self.bbox_pred(reg_feature))
            regression.append(F.relu(reg) * self.strides[level] if self.norm_reg_targets else torch.exp(reg))
        return logits, regression, centerness


def compute_locations(sizes: Sequence[tuple[int, int]], strides: Sequence[int], *, offset: str = "half_stride",
                      device=None) -> list[torch.Tensor]:
    """(x, y) of every cell of every level, row-major, [H*W, 2] per level.
    offset 'half_stride': x*stride + stride//2 (FCOS); 'zero': x*stride (torchvision's anchor centres)."""
    locations = []
    for (h, w), stride in zip(sizes, strides):
        shift = stride // 2 if offset == "half_stride" else 0
        xs = torch.arange(w, dtype=torch.float32, device=device) * stride + shift
        ys = torch.arange(h, dtype=torch.float32, device=device) * stride + shift
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        locations.append(torch.stack((x.reshape(-1), y.reshape(-1)), dim=1))
    return locations


def assign_targets(locations: Sequence[torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor, *,
                   strides: Sequence[int], sizes_of_interest: Sequence[Sequence[float]],
                   center_sampling_radius: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """FCOS's target assignment for one image.

    A location is positive for a box when it lies inside the box (or, with center sampling, inside
    the box's centre region of half-size radius * stride, clipped to the box) and max(l, t, r, b)
    falls in its level's size range (bounds inclusive); among several boxes, the smallest wins.
    Returns labels [P] (0 = background, else the box's label) and regression targets [P, 4]
    (l, t, r, b in pixels) for the P locations of all levels concatenated.
    """
    points = torch.cat(list(locations), dim=0)
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return labels.new_zeros(num_points), points.new_zeros((num_points, 4))
    per_level = [len(loc) for loc in locations]
    point_stride = torch.cat([points.new_full((n,), float(s)) for n, s in zip(per_level, strides)])
    size_range = torch.cat([points.new_tensor(sizes_of_interest[i]).expand(n, 2) for i, n in enumerate(per_level)])

    xs, ys = points[:, 0, None], points[:, 1, None]
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    reg = torch.stack((xs - x0, ys - y0, x1 - xs, y1 - ys), dim=2)  # [P, M, 4]
    if center_sampling_radius > 0:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        radius = point_stride[:, None] * center_sampling_radius
        inside = ((xs > torch.maximum(cx - radius, x0)) & (xs < torch.minimum(cx + radius, x1))
                  & (ys > torch.maximum(cy - radius, y0)) & (ys < torch.minimum(cy + radius, y1)))
    else:
        inside = reg.min(dim=2).values > 0
    max_reg = reg.max(dim=2).values
    in_range = (max_reg >= size_range[:, :1]) & (max_reg <= size_range[:, 1:])

    area = (x1 - x0) * (y1 - y0)
    candidate_area = torch.where(inside & in_range, area[None, :], torch.full_like(max_reg, INF))
    min_area, box_index = candidate_area.min(dim=1)
    point_labels = torch.where(min_area == INF, torch.zeros_like(labels[box_index]), labels[box_index])
    return point_labels, reg[torch.arange(num_points, device=reg.device), box_index]


def centerness_targets(reg_targets: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) for [K, 4] (l, t, r, b)."""
    left_right, top_bottom = reg_targets[:, [0, 2]], reg_targets[:, [1, 3]]
    ratio = ((left_right.min(dim=1).values / left_right.max(dim=1).values)
             * (top_bottom.min(dim=1).values / top_bottom.max(dim=1).values))
    return torch.sqrt(ratio)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """Per-location IoU loss between (l, t, r, b) distances from the same point, [K, 4] each:
    'iou' -log(IoU), 'linear_iou' 1 - IoU, 'giou' 1 - GIoU (torchvision's generalized_box_iou_loss)."""
    check_iou_loss_type(loss_type)
    if loss_type == "giou":
        # Boxes relative to the location; GIoU is translation-invariant.
        return generalized_box_iou_loss(torch.cat((-pred[:, :2], pred[:, 2:]), dim=1),
                                        torch.cat((-target[:, :2], target[:, 2:]), dim=1), reduction="none", eps=eps)
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    inter_w = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])
    inter_h = torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    inter = inter_w * inter_h
    iou = inter / (pred_area + target_area - inter + eps)
    return -torch.log(iou.clamp(min=eps)) if loss_type == "iou" else 1.0 - iou


def check_iou_loss_type(loss_type: str) -> str:
    """MODEL.FCOS.IOU_LOSS_TYPE: one of IOU_LOSS_TYPES (FCOS's 'iou' and 'linear_iou', FCOS_PLUS's 'giou')."""
    return check_choice("MODEL.FCOS.IOU_LOSS_TYPE", loss_type, IOU_LOSS_TYPES)


def fcos_losses(cls_logits: torch.Tensor, regression: torch.Tensor, centerness: torch.Tensor,
                labels: torch.Tensor, reg_targets: torch.Tensor, *, iou_loss_type: str = "iou",
                alpha: float = 0.25, gamma: float = 2.0, reg_weighting: str = "centerness") -> dict:
    """FCOS's three losses over flattened locations of the whole batch.

    cls_logits [K, C], regression [K, 4] (pixels), centerness [K] (logits), labels [K] (0 = bg),
    reg_targets [K, 4]. loss_cls = focal loss sum / num positives; loss_reg = IoU loss weighted by
    the centerness targets / their sum ('centerness', FCOS) or sum / num positives ('none',
    torchvision); loss_centerness = BCE sum / num positives.
    """
    positive = labels > 0
    num_pos = max(reduce_mean({"n": float(positive.sum().item())})["n"], 1.0)
    cls_targets = torch.zeros_like(cls_logits)
    pos_index = positive.nonzero().squeeze(1)
    cls_targets[pos_index, labels[pos_index] - 1] = 1.0
    loss_cls = sigmoid_focal_loss(cls_logits, cls_targets, alpha=alpha, gamma=gamma, reduction="sum") / num_pos
    pos_targets = reg_targets[pos_index]
    ctr_targets = centerness_targets(pos_targets)
    # Every process takes part in this reduction, positives or not (else the collectives deadlock).
    ctr_sum = reduce_mean({"n": float(ctr_targets.sum().item())})["n"] if reg_weighting == "centerness" else 0.0
    if pos_index.numel() == 0:
        # Keep the graph connected (DDP needs every parameter used) with zero losses.
        return {"loss_cls": loss_cls, "loss_reg": regression.sum() * 0.0, "loss_centerness": centerness.sum() * 0.0}
    losses = iou_loss(regression[pos_index], pos_targets, iou_loss_type)
    if reg_weighting == "centerness":
        loss_reg = (losses * ctr_targets).sum() / ctr_sum
    else:
        loss_reg = losses.sum() / num_pos
    loss_ctr = F.binary_cross_entropy_with_logits(centerness[pos_index], ctr_targets, reduction="sum") / num_pos
    return {"loss_cls": loss_cls, "loss_reg": loss_reg, "loss_centerness": loss_ctr}


def postprocess_detections(logits: Sequence[torch.Tensor], regression: Sequence[torch.Tensor],
                           centerness: Sequence[torch.Tensor], locations: Sequence[torch.Tensor],
                           image_sizes: Sequence[tuple[int, int]], *, score_thresh: float = 0.05,
                           score_th_on: str = "cls", pre_nms_top_n: int = 1000, nms_thresh: float = 0.6,
                           detections_per_img: int = 100) -> list[dict]:
    """FCOS inference for a batch, from the head's per-level outputs ([N, C, H, W], [N, 4, H, W],
    [N, 1, H, W]) and the levels' locations.

    Per level: keep (location, class) pairs whose sigmoid(cls) (score_th_on 'cls', FCOS) or
    sqrt(sigmoid(cls) * sigmoid(ctr)) (score_th_on 'sqrt_cls_ctr', torchvision) exceeds score_thresh,
    then the pre_nms_top_n best by score = sqrt(cls * ctr); decode and clip the boxes. Per image:
    class-wise NMS (torchvision.ops.batched_nms) and the detections_per_img best. Labels are 1..C.
    """
    results = []
    for i, (height, width) in enumerate(image_sizes):
        boxes_all, scores_all, labels_all = [], [], []
        for cls, reg, ctr, loc in zip(logits, regression, centerness, locations):
            num_classes = cls.shape[1]
            cls_prob = cls[i].flatten(1).t().sigmoid()  # [HW, C]
            scores = torch.sqrt(cls_prob * ctr[i].flatten().sigmoid()[:, None])
            keep = (cls_prob if score_th_on == "cls" else scores) > score_thresh
            flat_index = keep.flatten().nonzero().squeeze(1)
            scores = scores.flatten()[flat_index]
            scores, order = scores.topk(min(pre_nms_top_n, scores.numel()))
            flat_index = flat_index[order]
            point_index = torch.div(flat_index, num_classes, rounding_mode="floor")
            distances = reg[i].flatten(1).t()[point_index]
            points = loc[point_index]
            boxes = torch.cat((points - distances[:, :2], points + distances[:, 2:]), dim=1)
            boxes_all.append(clip_boxes_to_image(boxes, (height, width)))
            scores_all.append(scores)
            labels_all.append(flat_index % num_classes + 1)
        boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results
