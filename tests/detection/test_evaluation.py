"""COCO AP: perfect detections score 1.0, and the numbers equal pycocotools' COCOeval called directly."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from resbone.detection.evaluation import COCO_METRICS, evaluate_coco, predictions_to_coco


def _coco() -> COCO:
    """Two images; COCO category ids 3 and 7 (not contiguous) = labels 1 and 2; small, medium and large."""
    boxes = {1: [([10, 10, 20, 20], 3), ([40, 40, 60, 50], 7)], 2: [([0, 0, 120, 110], 3), ([5, 5, 40, 40], 7)]}
    anns = []
    for image_id, items in boxes.items():
        for (x, y, w, h), cat in items:
            anns.append(dict(id=len(anns) + 1, image_id=image_id, category_id=cat, bbox=[x, y, w, h],
                             area=w * h, iscrowd=0))
    coco = COCO()
    coco.dataset = dict(images=[dict(id=1, width=128, height=128), dict(id=2, width=128, height=128)],
                        annotations=anns, categories=[dict(id=3, name="a"), dict(id=7, name="b")])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


LABEL_TO_CAT = {1: 3, 2: 7}


def _perfect(coco: COCO) -> dict:
    predictions = {}
    for image_id in coco.imgs:
        anns = coco.imgToAnns[image_id]
        predictions[image_id] = dict(
            boxes=torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                 a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32),
            scores=torch.full((len(anns),), 0.9),
            labels=torch.tensor([{3: 1, 7: 2}[a["category_id"]] for a in anns]))
    return predictions


def test_perfect_detections_score_one():
    coco = _coco()
    metrics = evaluate_coco(coco, _perfect(coco), LABEL_TO_CAT)
    assert set(metrics) == set(COCO_METRICS)
    for name in COCO_METRICS:
        assert metrics[name] == pytest.approx(1.0, abs=1e-9), name


def test_wrong_labels_score_zero():
    coco = _coco()
    predictions = _perfect(coco)
    for p in predictions.values():
        p["labels"] = 3 - p["labels"]
    assert evaluate_coco(coco, predictions, LABEL_TO_CAT)["AP"] == 0.0


def test_equals_cocoeval_called_directly():
    """Shifted boxes, a false positive and a missed object: resbone's numbers are COCOeval's stats[:6]
    on the hand-written xywh result list."""
    coco = _coco()
    predictions = {
        1: dict(boxes=torch.tensor([[11.0, 10.0, 31.0, 30.0], [40.0, 42.0, 100.0, 92.0], [0.0, 0.0, 5.0, 5.0]]),
                scores=torch.tensor([0.8, 0.7, 0.95]), labels=torch.tensor([1, 2, 2])),
        2: dict(boxes=torch.tensor([[0.0, 5.0, 118.0, 110.0]]), scores=torch.tensor([0.6]),
                labels=torch.tensor([1])),
    }
    results = [dict(image_id=1, category_id=3, bbox=[11.0, 10.0, 20.0, 20.0], score=0.8),
               dict(image_id=1, category_id=7, bbox=[40.0, 42.0, 60.0, 50.0], score=0.7),
               dict(image_id=1, category_id=7, bbox=[0.0, 0.0, 5.0, 5.0], score=0.95),
               dict(image_id=2, category_id=3, bbox=[0.0, 5.0, 118.0, 105.0], score=0.6)]
    converted = predictions_to_coco(predictions, LABEL_TO_CAT)
    assert [(r["image_id"], r["category_id"], r["bbox"]) for r in converted] == \
        [(r["image_id"], r["category_id"], r["bbox"]) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCOeval(coco, coco.loadRes(results), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    metrics = evaluate_coco(coco, predictions, LABEL_TO_CAT)
    for name, value in zip(COCO_METRICS, reference.stats[:6]):
        assert metrics[name] == pytest.approx(value, abs=1e-12), name
    assert 0 < metrics["AP"] < 1


def test_no_detections_is_zero_and_unknown_images_are_refused():
    coco = _coco()
    empty = dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))
    assert evaluate_coco(coco, {1: empty, 2: empty}, LABEL_TO_CAT) == {name: 0.0 for name in COCO_METRICS}
    with pytest.raises(KeyError, match="not in the annotations"):
        evaluate_coco(coco, {99: empty}, LABEL_TO_CAT)


def test_label_without_a_category_names_label_and_fix():
    """A detector with more classes than the data set used to fail with a bare `KeyError: 5`."""
    prediction = {7: dict(boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0]]), scores=torch.tensor([0.9]),
                          labels=torch.tensor([5]))}
    with pytest.raises(KeyError, match=r"image 7: predicted label 5 has no category.*\[1, 2\].*NUM_CLASSES"):
        predictions_to_coco(prediction, {1: 10, 2: 20})
    assert predictions_to_coco({7: dict(prediction[7], labels=torch.tensor([2]))}, {1: 10, 2: 20}) == [
        dict(image_id=7, category_id=20, bbox=[0.0, 0.0, 4.0, 4.0], score=pytest.approx(0.9))]


def test_no_detection_scores_zero_and_minus_one_like_cocoeval():
    """No detection at all used to give 0.0 for every number; COCOeval's convention (as with any
    detections) is -1 for a size with no object: image 1 has a small and a medium box, no large one."""
    empty = dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))
    metrics = evaluate_coco(_coco(), {1: empty}, LABEL_TO_CAT)
    assert metrics == dict(AP=0.0, AP50=0.0, AP75=0.0, APs=0.0, APm=0.0, APl=-1.0)
    assert evaluate_coco(_coco(), {1: empty, 2: empty}, LABEL_TO_CAT)["APl"] == 0.0  # image 2 has a large box
