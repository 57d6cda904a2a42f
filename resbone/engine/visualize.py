"""Pictures of a run, for every task: the loss / learning-rate curves and the grid that puts panels side by side.

The curves are read back from the run's metrics.jsonl, so they can be redrawn for any run at any
time (`plot_curves(OUTPUT_DIR)`). matplotlib with the Agg backend: no display needed.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from resbone.engine.metrics import read_metrics
from resbone.utils.files import atomic_path

__all__ = ["read_metrics", "plot_curves", "font", "with_title", "side_by_side", "save_png"]


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


def font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: the fixed 11-pixel bitmap font
        return ImageFont.load_default()


def with_title(canvas: Image.Image, title: str, font) -> Image.Image:
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
