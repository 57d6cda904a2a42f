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
    if not results:
        # pycocotools cannot load an empty result list; no detection means zero AP
        return {name: 0.0 for name in COCO_METRICS}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = sorted(int(i) for i in predictions)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(output.getvalue().strip())
    return {name: float(value) for name, value in zip(COCO_METRICS, evaluator.stats[:6])}
