"""COCO box AP of a detector's predictions, through pycocotools' COCOeval (the reference itself).

Anchor: FCOS/maskrcnn-benchmark `coco_eval.py`: predictions in input-image pixels, xyxy -> xywh,
contiguous labels -> COCO category ids, COCOeval('bbox') and its six headline numbers. Proven by
tests/detection/test_evaluation.py (perfect detections -> 1.0, and against COCOeval called directly).
"""
from __future__ import annotations

import contextlib
import io
from typing import Mapping

import torch

__all__ = ["COCO_METRICS", "predictions_to_coco", "evaluate_coco"]

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def predictions_to_coco(predictions: Mapping[int, Mapping[str, torch.Tensor]],
                        label_to_cat_id: Mapping[int, int] | None = None) -> list[dict]:
    """{image_id: dict(boxes xyxy [K,4], scores [K], labels [K])} -> COCO result dicts (xywh boxes)."""
    results = []
    for image_id, pred in predictions.items():
        boxes = torch.as_tensor(pred["boxes"], dtype=torch.float64).reshape(-1, 4)
        scores = torch.as_tensor(pred["scores"]).reshape(-1).tolist()
        labels = torch.as_tensor(pred["labels"]).reshape(-1).tolist()
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"image {image_id}: boxes, scores and labels differ in length "
                             f"({len(boxes)}, {len(scores)}, {len(labels)})")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, scores, labels):
            if label_to_cat_id is not None and int(label) not in label_to_cat_id:
                raise KeyError(f"image {image_id}: predicted label {int(label)} has no category in the "
                               f"annotations (labels {sorted(label_to_cat_id)}); the detector's "
                               "MODEL.FCOS.NUM_CLASSES - 1 must equal the data set's number of categories")
            category = label_to_cat_id[int(label)] if label_to_cat_id is not None else int(label)
            results.append(dict(image_id=int(image_id), category_id=int(category), bbox=box,
                                score=float(score)))
    return results


def evaluate_coco(coco_gt, predictions: Mapping[int, Mapping[str, torch.Tensor]],
                  label_to_cat_id: Mapping[int, int] | None = None, *, verbose: bool = False
                  ) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl (fractions in 0..1; -1 where the set has no object of that size).

    coco_gt: a pycocotools COCO; predictions: {image_id: dict(boxes, scores, labels)} for the images
    to score (images without an entry are not scored)."""
    from pycocotools.cocoeval import COCOeval

    unknown = set(predictions) - set(coco_gt.imgs)
    if unknown:
        raise KeyError(f"predictions for image ids not in the annotations: {sorted(unknown)[:5]}")
    results = predictions_to_coco(predictions, label_to_cat_id)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            # pycocotools' loadRes cannot take an empty list; an empty result set still gets COCOeval's
            # numbers: 0, or -1 where the images have no object of that size (as with any detections)
            from pycocotools.coco import COCO

            coco_dt = COCO()
            coco_dt.dataset = dict(images=list(coco_gt.imgs.values()), categories=list(coco_gt.cats.values()),
                                   annotations=[])
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = sorted(int(i) for i in predictions)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(output.getvalue().strip())
    return {name: float(value) for name, value in zip(COCO_METRICS, evaluator.stats[:6])}
