"""Detections drawn on images: boxes, class names and scores, the ground truth beside the prediction.

Pillow's ImageDraw; the panels are laid out by resbone.engine.visualize.side_by_side. Proven by
tests/detection/test_predictor.py.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from PIL import Image, ImageDraw

from resbone.engine.visualize import font as _font
from resbone.engine.visualize import save_png, side_by_side
from resbone.engine.visualize import with_title as _with_title

__all__ = ["render_boxes", "render_detections", "draw_detections"]

_COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


def render_boxes(image: torch.Tensor, boxes, labels, scores=None, *, class_names: Sequence[str] | None = None,
                 score_threshold: float = 0.0, title: str | None = None, min_side: int = 384) -> Image.Image:
    """An RGB 0..1 image [3,H,W] as a PIL image with its boxes and labels (`name score`): enlarged by a whole
    factor until its short side is at least `min_side` pixels (a 96-pixel image and 11-pixel labels leave no
    room to read), labels kept inside the picture and off each other, an optional title strip above."""
    pixels = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    canvas = Image.fromarray(pixels)
    factor = max(1, math.ceil(min_side / max(1, min(canvas.size))))
    if factor > 1:  # whole factors and nearest neighbours: every original pixel stays a crisp square
        canvas = canvas.resize((canvas.width * factor, canvas.height * factor), Image.NEAREST)
    font = _font(max(12, min(24, min(canvas.size) // 28)))
    draw = ImageDraw.Draw(canvas)
    scores = [None] * len(labels) if scores is None else list(scores)
    shown = [(b, s, int(c)) for b, s, c in zip(boxes, scores, labels) if s is None or s >= score_threshold]
    shown.sort(key=lambda t: -1.0 if t[1] is None else -t[1])
    width = max(2, factor)
    for box, _, label in reversed(shown):  # the best box is drawn last, on top of weaker ones at its place
        box = [float(v) * factor for v in box]
        # a dark rim under the colour: an orange box stays visible on an orange image
        draw.rectangle([box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1], outline=(0, 0, 0), width=width + 2)
        draw.rectangle(box, outline=_COLORS[label % len(_COLORS)], width=width)
    placed: list[tuple[float, float, float, float]] = []
    for box, score, label in shown:  # best first: they get the free label places
        color = _COLORS[label % len(_COLORS)]
        box = [float(v) * factor for v in box]
        name = class_names[label - 1] if class_names and 0 < label <= len(class_names) else str(label)
        text = name if score is None else f"{name} {score:.2f}"
        spot = _label_spot(draw, text, font, box, canvas.size, placed)
        placed.append(spot)
        draw.rectangle(spot, fill=color)
        draw.text((spot[0] + 2, spot[1] + 1), text, fill=(255, 255, 255), font=font)
    return _with_title(canvas, title, font) if title else canvas


def _label_spot(draw, text, font, box, size, placed) -> tuple[float, float, float, float]:
    """Where a label goes: above its box, else inside its top edge, below it, inside its bottom edge (at the
    box's left, then its right end); always inside the image; the first of those that overlaps no label
    placed before, else the first."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 4, bottom - top + 4
    spots = []
    for y in (box[1] - height, box[1], box[3], box[3] - height):
        for x in (box[0], box[2] - width):
            x = max(0.0, min(x, size[0] - width))
            y = max(0.0, min(y, size[1] - height))
            spots.append((x, y, x + width, y + height))
    for spot in spots:
        if not any(spot[0] < p[2] and p[0] < spot[2] and spot[1] < p[3] and p[1] < spot[3] for p in placed):
            return spot
    return spots[0]


def render_detections(image: torch.Tensor, prediction: dict, *, class_names: Sequence[str] | None = None,
                      score_threshold: float = 0.3, ground_truth: dict | None = None,
                      min_side: int = 384) -> Image.Image:
    """The prediction drawn on the image; with `ground_truth` (boxes, labels) the truth on the left and
    the prediction on the right, each titled."""
    predicted = render_boxes(image, prediction["boxes"].tolist(), prediction["labels"].tolist(),
                             prediction["scores"].tolist(), class_names=class_names, score_threshold=score_threshold,
                             title=None if ground_truth is None else f"prediction (score >= {score_threshold:.2f})",
                             min_side=min_side)
    if ground_truth is None:
        return predicted
    truth = render_boxes(image, ground_truth["boxes"].tolist(), ground_truth["labels"].tolist(),
                         class_names=class_names, title="ground truth", min_side=min_side)
    return side_by_side([truth, predicted])


def draw_detections(image: torch.Tensor, prediction: dict, path: str, *,
                    class_names: Sequence[str] | None = None, score_threshold: float = 0.3,
                    ground_truth: dict | None = None, min_side: int = 384) -> str:
    """Save render_detections(...) as a PNG at `path` (atomically); returns the path."""
    return save_png(render_detections(image, prediction, class_names=class_names, score_threshold=score_threshold,
                                      ground_truth=ground_truth, min_side=min_side), path)
