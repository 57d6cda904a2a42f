"""FCOSHead: FCOS's structure, names and init; each config switch does what FCOS does; and the
post-processing equals a brute-force loop built on torchvision.ops.nms (one class at a time)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from resbone.detection.fcos import FCOSHead, compute_locations, postprocess_detections

STRIDES = (8, 16, 32)


def _features(channels=32, sizes=((8, 6), (4, 3), (2, 2))):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, channels, h, w, generator=g) for h, w in sizes]


def _randomize(head: FCOSHead) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.shape == (1,) else 0.0))


def test_state_dict_names_match_fcos():
    head = FCOSHead(256, 80, num_convs=4)
    keys = set(head.state_dict())
    tower = {f"{t}.{i}.{p}" for t in ("cls_tower", "bbox_tower") for i in (0, 1, 3, 4, 6, 7, 9, 10)
             for p in ("weight", "bias")}
    expected = tower | {f"{m}.{p}" for m in ("cls_logits", "bbox_pred", "centerness") for p in ("weight", "bias")}
    expected |= {f"scales.{level}.scale" for level in range(5)}
    assert keys == expected
    assert head.cls_logits.out_channels == 80
    assert isinstance(head.cls_tower[1], torch.nn.GroupNorm) and head.cls_tower[1].num_groups == 32


def test_init_follows_fcos():
    head = FCOSHead(64, 3, prior_prob=0.02)
    torch.testing.assert_close(head.cls_logits.bias, torch.full((3,), -math.log(0.98 / 0.02)))
    for conv in (head.cls_tower[0], head.bbox_tower[3], head.bbox_pred, head.centerness):
        assert float(conv.bias.detach().abs().max()) == 0.0
        assert 0.005 < float(conv.weight.detach().std()) < 0.015  # normal(std=0.01)
    assert all(float(s.scale.detach()) == 1.0 for s in head.scales)


@pytest.mark.parametrize("centerness_on_reg", [False, True])
@pytest.mark.parametrize("norm_reg_targets", [False, True])
def test_branches_and_regression_formula(centerness_on_reg, norm_reg_targets):
    head = FCOSHead(32, 3, strides=STRIDES, num_convs=2, centerness_on_reg=centerness_on_reg,
                    norm_reg_targets=norm_reg_targets)
    _randomize(head)
    features = _features()
    with torch.no_grad():
        logits, regression, centerness = head(features)
        for level, (x, stride) in enumerate(zip(features, STRIDES)):
            cls_x, reg_x = head.cls_tower(x), head.bbox_tower(x)
            torch.testing.assert_close(logits[level], head.cls_logits(cls_x))
            torch.testing.assert_close(centerness[level], head.centerness(reg_x if centerness_on_reg else cls_x))
            raw = head.bbox_pred(reg_x) * head.scales[level].scale
            expected = F.relu(raw) * stride if norm_reg_targets else torch.exp(raw)
            torch.testing.assert_close(regression[level], expected)


def test_tower_is_conv_gn_relu_repeated():
    head = FCOSHead(32, 2, num_convs=3)
    kinds = [type(m).__name__ for m in head.bbox_tower]
    assert kinds == ["Conv2d", "GroupNorm", "ReLU"] * 3


def test_dcn_in_last_tower_conv():
    from resbone.layers.conv import ModulatedDeformConv2dPack

    head = FCOSHead(32, 2, strides=STRIDES, num_convs=2, dcn=dict(type="DCNv2"))
    assert isinstance(head.cls_tower[3], ModulatedDeformConv2dPack)
    assert isinstance(head.bbox_tower[3], ModulatedDeformConv2dPack)
    assert type(head.cls_tower[0]) is torch.nn.Conv2d
    assert float(head.cls_tower[3].conv_offset.weight.detach().abs().max()) == 0.0  # starts as the plain conv
    logits, regression, centerness = head(_features())
    assert [tuple(t.shape) for t in logits] == [(2, 2, 8, 6), (2, 2, 4, 3), (2, 2, 2, 2)]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_classes"):
        FCOSHead(32, 0)
    with pytest.raises(ValueError, match="multiple of 32"):
        FCOSHead(48, 2)
    with pytest.raises(ValueError, match="PRIOR_PROB"):
        FCOSHead(32, 2, prior_prob=1.5)
    with pytest.raises(ValueError, match="expects 3 pyramid levels"):
        FCOSHead(32, 2, strides=STRIDES)(_features()[:2])


def test_locations_fcos_and_torchvision_offsets():
    fcos = compute_locations([(2, 3)], [16])[0]
    assert fcos.tolist() == [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]]
    tv = compute_locations([(2, 3)], [16], offset="zero")[0]
    assert tv.tolist() == [[0, 0], [16, 0], [32, 0], [0, 16], [16, 16], [32, 16]]


# ---------------------------------------------------------------- post-processing

def _reference_postprocess(logits, regression, centerness, locations, image_sizes, *, score_thresh,
                           score_th_on, pre_nms_top_n, nms_thresh, detections_per_img):
    """Loops over every (location, class), NMS one class at a time with torchvision.ops.nms."""
    results = []
    for i, (height, width) in enumerate(image_sizes):
        boxes, scores, labels = [], [], []
        for cls, reg, ctr, loc in zip(logits, regression, centerness, locations):
            num_classes, h, w = cls.shape[1:]
            level = []
            for y in range(h):
                for x in range(w):
                    c = torch.sigmoid(ctr[i, 0, y, x])
                    for k in range(num_classes):
                        p = torch.sigmoid(cls[i, k, y, x])
                        score = torch.sqrt(p * c)
                        if (p if score_th_on == "cls" else score) > score_thresh:
                            level.append((float(score), y * w + x, k))
            level.sort(key=lambda item: -item[0])
            for score, index, k in level[:pre_nms_top_n]:
                px, py = loc[index].tolist()
                left, t, r, b = reg[i, :, index // w, index % w].tolist()
                boxes.append([min(max(px - left, 0), width), min(max(py - t, 0), height),
                              min(max(px + r, 0), width), min(max(py + b, 0), height)])
                scores.append(score)
                labels.append(k + 1)
        boxes, scores, labels = torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels)
        keep = [torch.nonzero(labels == k).squeeze(1)[nms(boxes[labels == k], scores[labels == k], nms_thresh)]
                for k in labels.unique()]
        keep = torch.cat(keep or [torch.zeros(0, dtype=torch.long)])
        keep = keep[scores[keep].argsort(descending=True)][:detections_per_img]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results


def _head_outputs():
    g = torch.Generator().manual_seed(3)
    sizes, num_classes = ((4, 4), (2, 2)), 3
    logits = [torch.randn(2, num_classes, h, w, generator=g) * 2 - 1 for h, w in sizes]
    regression = [torch.rand(2, 4, h, w, generator=g) * 12 * s / 8 + 2 for (h, w), s in zip(sizes, (8, 16))]
    centerness = [torch.randn(2, 1, h, w, generator=g) for h, w in sizes]
    return logits, regression, centerness, compute_locations(sizes, (8, 16))


@pytest.mark.parametrize("score_th_on,score_thresh", [("cls", 0.3), ("sqrt_cls_ctr", 0.3)])
@pytest.mark.parametrize("pre_nms_top_n,detections_per_img", [(1000, 100), (5, 6)])
def test_postprocess_matches_bruteforce_reference(score_th_on, score_thresh, pre_nms_top_n, detections_per_img):
    logits, regression, centerness, locations = _head_outputs()
    kwargs = dict(score_thresh=score_thresh, score_th_on=score_th_on, pre_nms_top_n=pre_nms_top_n,
                  nms_thresh=0.5, detections_per_img=detections_per_img)
    image_sizes = [(30, 28), (32, 25)]
    got = postprocess_detections(logits, regression, centerness, locations, image_sizes, **kwargs)
    expected = _reference_postprocess(logits, regression, centerness, locations, image_sizes, **kwargs)
    for g, e in zip(got, expected):
        assert len(e["boxes"]) > 0
        torch.testing.assert_close(g["scores"], e["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=0, atol=1e-5)
        assert g["labels"].tolist() == e["labels"].tolist()
        assert len(g["boxes"]) <= detections_per_img
        assert float(g["boxes"][:, 2].max()) <= image_sizes[0][1] + 1e-6


def test_postprocess_thresholds_differ_as_documented():
    """'cls' thresholds sigmoid(cls) (FCOS); 'sqrt_cls_ctr' thresholds the final score (torchvision)."""
    logits, regression, centerness, locations = _head_outputs()
    centerness = [c - 10 for c in centerness]  # tiny centerness: final scores fall below 0.3
    common = dict(score_thresh=0.3, pre_nms_top_n=1000, nms_thresh=1.0, detections_per_img=1000)
    by_cls = postprocess_detections(logits, regression, centerness, locations, [(32, 32)], score_th_on="cls", **common)
    by_score = postprocess_detections(logits, regression, centerness, locations, [(32, 32)],
                                      score_th_on="sqrt_cls_ctr", **common)
    assert len(by_cls[0]["boxes"]) > 0 and len(by_score[0]["boxes"]) == 0
    assert float(by_cls[0]["scores"].max()) < 0.3


def test_postprocess_with_no_candidates():
    logits, regression, centerness, locations = _head_outputs()
    out = postprocess_detections([level - 100 for level in logits], regression, centerness, locations, [(32, 32)] * 2)
    assert all(o["boxes"].shape == (0, 4) and o["scores"].shape == (0,) and o["labels"].shape == (0,) for o in out)
