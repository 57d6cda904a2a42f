"""Pictures of a run: the loss / learning-rate curves and images with predicted boxes.

The curves are read back from the run's metrics.jsonl, so they can be redrawn for any run at any
time (`plot_curves(OUTPUT_DIR)`). matplotlib with the Agg backend: no display needed.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from PIL import Image, ImageDraw

from resbone.engine.metrics import read_metrics
from resbone.utils.files import atomic_path

__all__ = ["read_metrics", "plot_curves", "draw_detections"]

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


def draw_detections(image: torch.Tensor, prediction: dict, path: str, *,
                    class_names: Sequence[str] | None = None, score_threshold: float = 0.3) -> str:
    """Save an RGB 0..1 image [3,H,W] with its boxes, class names and scores as a PNG."""
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    boxes = prediction["boxes"].detach().cpu().tolist()
    scores = prediction["scores"].detach().cpu().tolist()
    labels = prediction["labels"].detach().cpu().tolist()
    for box, score, label in sorted(zip(boxes, scores, labels), key=lambda t: t[1]):
        if score < score_threshold:
            continue
        color = _COLORS[int(label) % len(_COLORS)]
        name = class_names[int(label) - 1] if class_names and 0 < label <= len(class_names) else str(label)
        draw.rectangle(box, outline=color, width=2)
        text = f"{name} {score:.2f}"
        x, y = box[0], max(0, box[1] - 11)
        draw.rectangle([x, y, x + 6 * len(text) + 2, y + 10], fill=color)
        draw.text((x + 1, y - 1), text, fill=(255, 255, 255))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:  # PIL picks the format from the suffix
        canvas.save(tmp)
    return path
