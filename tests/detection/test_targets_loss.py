"""FCOS target assignment and losses against values worked out by hand on a 32x32 image with two
boxes, A = [0, 0, 20, 20] (label 1, area 400) and B = [6, 6, 30, 30] (label 2, area 576).

Levels: stride 8 (4x4 cells, FCOS locations x, y in {4, 12, 20, 28}) and stride 16 (2x2 cells,
locations {8, 24}). Size ranges on max(l, t, r, b): [-1, 16] and [16, INF], bounds inclusive.
"""
from __future__ import annotations

import math

import pytest
import torch

from resbone.detection.defaults import detector_cfg
from resbone.detection.detector import build_detector
from resbone.detection.fcos import INF, assign_targets, centerness_targets, compute_locations, fcos_losses, iou_loss

BOXES = torch.tensor([[0.0, 0.0, 20.0, 20.0], [6.0, 6.0, 30.0, 30.0]])
LABELS = torch.tensor([1, 2])
STRIDES = (8, 16)
LOCATIONS = compute_locations([(4, 4), (2, 2)], STRIDES)  # row-major, (x, y)
RANGES = [[-1, 16], [16, INF]]

# By hand (location -> label, l t r b): stride 8 rows y = 4, 12, 20, 28; then stride 16.
# (4,4) A: 4 4 16 16, max 16 <= 16 -> A.  (12,4) A: 12 4 8 16 -> A.  (20,4): A has r = 0 (not inside), B t < 0.
# (4,12) A: 4 12 16 8 -> A.  (12,12) A: 12 12 8 8 -> A (B: 6 6 18 18, max 18 > 16).  (20,20) B: 14 14 10 10 -> B.
# Other stride-8 cells: outside both or max > 16. Stride 16: (8,8) A max 12 < 16, B 2 2 22 22 -> B;
# (24,8) B 18 2 6 22; (8,24) B 2 18 22 6; (24,24) B 18 18 6 6.
EXPECTED = {
    (4, 4): (1, [4, 4, 16, 16]), (12, 4): (1, [12, 4, 8, 16]), (4, 12): (1, [4, 12, 16, 8]),
    (12, 12): (1, [12, 12, 8, 8]), (20, 20): (2, [14, 14, 10, 10]),
    (8, 8): (2, [2, 2, 22, 22]), (24, 8): (2, [18, 2, 6, 22]), (8, 24): (2, [2, 18, 22, 6]),
    (24, 24): (2, [18, 18, 6, 6]),
}


def _as_dict(labels, reg):
    points = torch.cat(LOCATIONS)
    return {tuple(int(v) for v in points[i].tolist()): (int(labels[i]), reg[i].tolist())
            for i in range(len(points)) if labels[i] > 0}


def test_assignment_by_size_range_matches_hand_values():
    labels, reg = assign_targets(LOCATIONS, BOXES, LABELS, strides=STRIDES, sizes_of_interest=RANGES)
    assert _as_dict(labels, reg) == {k: (lab, [float(v) for v in r]) for k, (lab, r) in EXPECTED.items()}


def test_ambiguous_location_goes_to_the_smallest_box():
    """With open size ranges (12,12) and (8,8) lie in both boxes: A, the smaller, wins, whatever the order."""
    open_ranges = [[-1, INF], [-1, INF]]
    for order in ([0, 1], [1, 0]):
        labels, reg = assign_targets(LOCATIONS, BOXES[order], LABELS[order], strides=STRIDES,
                                     sizes_of_interest=open_ranges)
        got = _as_dict(labels, reg)
        assert got[(12, 12)] == (1, [12.0, 12.0, 8.0, 8.0])
        assert got[(8, 8)] == (1, [8.0, 8.0, 12.0, 12.0])
        assert got[(20, 20)] == (2, [14.0, 14.0, 10.0, 10.0])


def test_center_sampling_by_hand():
    """Radius 1 (half-size = stride): A's centre (10, 10) -> region (2, 18) at stride 8 and (0, 20) at 16
    (clipped to A); B's centre (18, 18) -> (10, 26) at stride 8 and (6, 30) at 16."""
    labels, reg = assign_targets(LOCATIONS, BOXES, LABELS, strides=STRIDES, sizes_of_interest=[[-1, INF]] * 2,
                                 center_sampling_radius=1.0)
    got = {k: v[0] for k, v in _as_dict(labels, reg).items()}
    assert got == {(4, 4): 1, (12, 4): 1, (4, 12): 1, (12, 12): 1, (20, 12): 2, (12, 20): 2, (20, 20): 2,
                   (8, 8): 1, (24, 8): 2, (8, 24): 2, (24, 24): 2}
    assert _as_dict(labels, reg)[(20, 12)][1] == [14.0, 6.0, 10.0, 18.0]


def test_empty_image_is_all_background():
    labels, reg = assign_targets(LOCATIONS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                 strides=STRIDES, sizes_of_interest=RANGES)
    assert labels.shape == (20,) and int(labels.abs().sum()) == 0 and reg.shape == (20, 4)


def test_centerness_and_iou_losses_by_hand():
    targets = torch.tensor([[4.0, 4, 16, 16], [12, 4, 8, 16], [2, 2, 22, 22]])
    torch.testing.assert_close(centerness_targets(targets),
                               torch.tensor([0.25, math.sqrt(8 / 12 * 4 / 16), 2 / 22]))
    # Prediction (4, 4, 8, 8) around (4, 4): box [0, 0, 12, 12] inside target [0, 0, 20, 20]: IoU = 144 / 400,
    # and GIoU = IoU (the enclosing box is the target).
    pred, target = torch.tensor([[4.0, 4, 8, 8]]), torch.tensor([[4.0, 4, 16, 16]])
    torch.testing.assert_close(iou_loss(pred, target, "iou"), torch.tensor([-math.log(0.36)]))
    torch.testing.assert_close(iou_loss(pred, target, "linear_iou"), torch.tensor([0.64]))
    torch.testing.assert_close(iou_loss(pred, target, "giou"), torch.tensor([0.64]))
    # Disjoint-looking case for GIoU: (1, 1, 1, 1) vs (1, 1, 9, 1): IoU = 4 / 20, enclosing = union.
    torch.testing.assert_close(iou_loss(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[1.0, 1, 9, 1]]), "giou"),
                               torch.tensor([1 - 0.2]))
    with pytest.raises(ValueError, match="IOU_LOSS_TYPE"):
        iou_loss(pred, target, "l1")


def _losses_inputs():
    labels, reg_targets = assign_targets(LOCATIONS, BOXES, LABELS, strides=STRIDES, sizes_of_interest=RANGES)
    num = len(labels)
    cls_logits = torch.zeros(num, 2)  # p = 0.5 everywhere
    regression = reg_targets.clone()
    regression[labels == 0] = 1.0
    first = int(torch.nonzero(labels).squeeze(1)[0])  # (4, 4): target 4 4 16 16
    regression[first] = torch.tensor([4.0, 4, 8, 8])  # IoU 0.36 there, exact everywhere else
    centerness = torch.zeros(num)
    centerness[first] = math.log(0.25 / 0.75)  # sigmoid = 0.25 = its centerness target
    return cls_logits, regression, centerness, labels, reg_targets


def test_losses_by_hand():
    ln2 = math.log(2)
    num_pos = 9  # 4 of A and 5 of B; 20 locations x 2 classes = 40 logits, 9 of them positive
    focal_pos = 0.25 * 0.5 ** 2 * ln2   # alpha (1 - p)^gamma (-log p)
    focal_neg = 0.75 * 0.5 ** 2 * ln2   # (1 - alpha) p^gamma (-log(1 - p))
    ctr = [0.25, math.sqrt(8 / 12 * 4 / 16), math.sqrt(8 / 12 * 4 / 16), 8 / 12, 10 / 14,
           2 / 22, math.sqrt(6 / 18 * 2 / 22), math.sqrt(6 / 18 * 2 / 22), 6 / 18]
    entropy_quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # BCE at p = target = 0.25
    expected = {
        "loss_cls": (num_pos * focal_pos + (40 - num_pos) * focal_neg) / num_pos,
        "loss_reg": 0.25 * -math.log(0.36) / sum(ctr),  # weighted by centerness, / sum of the weights
        "loss_centerness": ((num_pos - 1) * ln2 + entropy_quarter) / num_pos,
    }
    got = fcos_losses(*_losses_inputs(), iou_loss_type="iou")
    for name, value in expected.items():
        torch.testing.assert_close(got[name], torch.tensor(value), rtol=1e-5, atol=1e-6)
    plain = fcos_losses(*_losses_inputs(), iou_loss_type="iou", reg_weighting="none")
    torch.testing.assert_close(plain["loss_reg"], torch.tensor(-math.log(0.36) / num_pos), rtol=1e-5, atol=1e-6)
    giou = fcos_losses(*_losses_inputs(), iou_loss_type="giou")
    torch.testing.assert_close(giou["loss_reg"], torch.tensor(0.25 * 0.64 / sum(ctr)), rtol=1e-5, atol=1e-6)


def test_losses_without_positives_are_zero_but_connected():
    cls_logits, regression, centerness, labels, reg_targets = _losses_inputs()
    regression.requires_grad_()
    got = fcos_losses(cls_logits, regression, centerness, torch.zeros_like(labels), reg_targets)
    torch.testing.assert_close(got["loss_cls"], torch.tensor(40 * 0.75 * 0.25 * math.log(2)))  # / max(0, 1)
    assert float(got["loss_reg"].detach()) == 0.0 and float(got["loss_centerness"]) == 0.0
    got["loss_reg"].backward()
    assert regression.grad is not None


def test_detector_losses_flatten_levels_and_images_like_fcos():
    """The detector's losses on hand-made head outputs for a batch of [the two-box image, an empty one]
    equal fcos_losses on the first image alone, except that the empty image adds its negatives to loss_cls."""
    cfg = detector_cfg({"MODEL": {"BACKBONE": {"CONV_BODY": "R-18-FPN-RETINANET"},
                                  "RESNETS": {"BACKBONE_OUT_CHANNELS": 32, "RES2_OUT_CHANNELS": 64},
                                  "FCOS": {"NUM_CLASSES": 3, "FPN_STRIDES": [8, 16, 32], "NUM_CONVS": 1,
                                           "SIZES_OF_INTEREST": [[-1, 16], [16, INF], [INF, INF]]}}})
    model = build_detector(cfg)
    cls_logits, regression, centerness, _, _ = _losses_inputs()

    def per_level(flat, channels):  # [20, ch] for image 0 -> [2, ch, H, W] per level (image 1 copies it)
        p3 = flat[:16].t().reshape(channels, 4, 4)
        p4 = flat[16:].t().reshape(channels, 2, 2)
        p5 = torch.zeros(channels, 1, 1)
        return [torch.stack([x, x]) for x in (p3, p4, p5)]

    logits = per_level(cls_logits, 2)
    reg = [r.clamp(min=1.0) for r in per_level(regression, 4)]
    ctr = per_level(centerness[:, None], 1)
    locations = compute_locations([(4, 4), (2, 2), (1, 1)], (8, 16, 32))
    targets = [dict(boxes=BOXES, labels=LABELS), dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    got = model.losses(logits, reg, ctr, locations, targets)
    alone = fcos_losses(*_losses_inputs())
    extra_negatives = (20 + 2) * 2 * 0.75 * 0.25 * math.log(2) / 9  # image 1: all 21 cells, + P5 cell of image 0
    torch.testing.assert_close(got["loss_cls"], alone["loss_cls"] + extra_negatives, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["loss_reg"], alone["loss_reg"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["loss_centerness"], alone["loss_centerness"], rtol=1e-5, atol=1e-6)
