"""The ranked-list picture re-id papers show: each query, then its top-k gallery images, right ones framed green
and wrong ones red, under the Market-1501 protocol (the gallery images evaluate_rank excludes, same identity
and camera or junk, are skipped as they are in scoring).

Anchor: torchreid's `utils.reidtools.visualize_ranked_results` (query, then the top `topk` with green / red
borders, same-camera matches skipped). Written with PIL, atomically (resbone.utils.files.atomic_path).
Reference test: tests/reid/test_visualize.py.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from resbone.models._checks import check_int
from resbone.reid.data import ReidItem
from resbone.reid.metrics import JUNK
from resbone.utils.files import atomic_path

__all__ = ["ranked_lists", "render_ranked_lists", "save_ranked_lists"]

GREEN, RED, QUERY_BLUE = (0, 170, 0), (220, 0, 0), (40, 90, 220)


def ranked_lists(distmat: np.ndarray | torch.Tensor, query: Sequence[ReidItem], gallery: Sequence[ReidItem], *,
                 topk: int = 10) -> list[list[tuple[int, bool]]]:
    """For each query, its top-k gallery (index, correct) pairs after the protocol's exclusions."""
    distmat = np.asarray(distmat.detach().cpu() if isinstance(distmat, torch.Tensor) else distmat)
    if distmat.shape != (len(query), len(gallery)):
        raise ValueError(f"distmat must be (len(query), len(gallery)) = {(len(query), len(gallery))}, got "
                         f"{distmat.shape}")
    check_int("topk", topk)
    lists = []
    for row, q in zip(distmat, query):
        ranked = []
        for index in np.argsort(row, kind="stable"):
            g = gallery[index]
            if g.pid == JUNK or (g.pid == q.pid and g.camid == q.camid):
                continue
            ranked.append((int(index), g.pid == q.pid))
            if len(ranked) == topk:
                break
        lists.append(ranked)
    return lists


def _tile(path: str, size: tuple[int, int], colour: tuple[int, int, int], border: int) -> Image.Image:
    with Image.open(path) as image:
        tile = image.convert("RGB").resize((size[1], size[0]))
    framed = Image.new("RGB", (size[1] + 2 * border, size[0] + 2 * border), colour)
    framed.paste(tile, (border, border))
    return framed


def render_ranked_lists(distmat: np.ndarray | torch.Tensor, query: Sequence[ReidItem], gallery: Sequence[ReidItem],
                        *, topk: int = 10, size: tuple[int, int] = (128, 64), border: int = 4,
                        gap: int = 12) -> Image.Image:
    """One row per query: the query (blue frame), a gap, then its top-k (green right, red wrong)."""
    lists = ranked_lists(distmat, query, gallery, topk=topk)
    cell_w, cell_h = size[1] + 2 * border + 2, size[0] + 2 * border + 2
    canvas = Image.new("RGB", (cell_w * (topk + 1) + gap, cell_h * len(query)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for row, (q, ranked) in enumerate(zip(query, lists)):
        y = row * cell_h
        canvas.paste(_tile(q.path, size, QUERY_BLUE, border), (0, y))
        for column, (index, correct) in enumerate(ranked):
            x = cell_w * (column + 1) + gap
            canvas.paste(_tile(gallery[index].path, size, GREEN if correct else RED, border), (x, y))
            draw.text((x + border + 1, y + border), str(column + 1), fill=(255, 255, 255))
    return canvas


def save_ranked_lists(path: str | os.PathLike, distmat: np.ndarray | torch.Tensor, query: Sequence[ReidItem],
                      gallery: Sequence[ReidItem], *, topk: int = 10, size: tuple[int, int] = (128, 64)) -> str:
    """render_ranked_lists(...) written to `path` (its suffix picks the format, e.g. .png), atomically."""
    path = os.fspath(path)
    picture = render_ranked_lists(distmat, query, gallery, topk=topk, size=size)
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
        picture.save(tmp)
    return path
