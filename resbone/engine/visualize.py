"""Pictures of a run: the loss / learning-rate curves and images with predicted (and true) boxes.

The curves are read back from the run's metrics.jsonl, so they can be redrawn for any run at any
time (`plot_curves(OUTPUT_DIR)`). matplotlib with the Agg backend: no display needed.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from resbone.engine.metrics import read_metrics
from resbone.utils.files import atomic_path

__all__ = ["read_metrics", "plot_curves", "render_boxes", "render_detections", "draw_detections", "side_by_side",
           "save_png"]

_COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


def plot_curves(output_dir: str, name: str = "curves.png") -> str | None:
    """Total and per-term losses (log scale) and the learning rate against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(os.path.join(output_dir, "metrics.jsonl")) if "loss" in r]
    if not rows:
        return None
    iters = [r["iter"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key in sorted({k for r in rows for k in r if k.startswith("loss")}):
        ax_loss.plot(iters, [r.get(key, float("nan")) for r in rows], label=key,
                     linewidth=2 if key == "loss" else 1)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(iters, [r["lr"] for r in rows], color="tab:red")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(output_dir, name)
    try:
        with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format from the suffix
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return path


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


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: the fixed 11-pixel bitmap font
        return ImageFont.load_default()


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


def _with_title(canvas: Image.Image, title: str, font) -> Image.Image:
    height = getattr(font, "size", 11) + 10
    out = Image.new("RGB", (canvas.width, canvas.height + height), (255, 255, 255))
    out.paste(canvas, (0, height))
    ImageDraw.Draw(out).text((4, 4), title, fill=(0, 0, 0), font=font)
    return out


def side_by_side(panels: Sequence[Image.Image], *, columns: int | None = None, gap: int = 8) -> Image.Image:
    """Panels in a grid (one row unless `columns`), on white, `gap` pixels apart."""
    columns = len(panels) if columns is None else max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    cell_w, cell_h = max(p.width for p in panels), max(p.height for p in panels)
    out = Image.new("RGB", (columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap),
                    (255, 255, 255))
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        out.paste(panel, (column * (cell_w + gap), row * (cell_h + gap)))
    return out


def save_png(picture: Image.Image, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:  # PIL picks the format from the suffix
        picture.save(tmp)
    return path


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
