"""The ranked-list picture: each query's top-k after the protocol's exclusions (junk, same identity and camera),
framed green when right and red when wrong, written atomically over an existing file."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from resbone.reid.data import read_reid_folder
from resbone.reid.metrics import JUNK
from resbone.reid.visualize import GREEN, QUERY_BLUE, RED, ranked_lists, save_ranked_lists


def _case(reid_set):
    splits = read_reid_folder(reid_set)
    query, gallery = splits["query"][:3], splits["gallery"]
    distmat = np.tile(np.arange(len(gallery), dtype=np.float32), (len(query), 1))  # gallery order = ranking
    return distmat, query, gallery


def test_top_k_skips_what_the_protocol_excludes(reid_set):
    distmat, query, gallery = _case(reid_set)
    lists = ranked_lists(distmat, query, gallery, topk=10)
    for q, ranked in zip(query, lists):
        expected = [i for i, g in enumerate(gallery) if g.pid != JUNK and not (g.pid == q.pid and g.camid == q.camid)]
        assert [index for index, _ in ranked] == expected[:10]
        assert [correct for _, correct in ranked] == [gallery[i].pid == q.pid for i in expected[:10]]
    assert any(correct for ranked in lists for _, correct in ranked)


def test_picture_frames_right_green_and_wrong_red(reid_set, tmp_path):
    distmat, query, gallery = _case(reid_set)
    path = tmp_path / "ranks.png"
    path.write_bytes(b"an older picture")
    assert save_ranked_lists(path, distmat, query, gallery, topk=10, size=(64, 32)) == str(path)
    assert os.listdir(tmp_path) == ["ranks.png"]  # replaced in place, no temporary file left
    picture = np.asarray(Image.open(path).convert("RGB"))
    cell_w, cell_h, gap = 32 + 8 + 2, 64 + 8 + 2, 12
    assert picture.shape == (cell_h * 3, cell_w * 11 + gap, 3)
    for row, ranked in enumerate(ranked_lists(distmat, query, gallery, topk=10)):
        assert tuple(picture[row * cell_h + 1, 1]) == QUERY_BLUE
        for column, (_, correct) in enumerate(ranked):
            corner = picture[row * cell_h + 1, cell_w * (column + 1) + gap + 1]
            assert tuple(corner) == (GREEN if correct else RED)


def test_bad_arguments_are_named(reid_set, tmp_path):
    distmat, query, gallery = _case(reid_set)
    with pytest.raises(ValueError, match=r"distmat must be \(len\(query\), len\(gallery\)\)"):
        save_ranked_lists(tmp_path / "x.png", distmat[:, :-1], query, gallery)
    with pytest.raises(ValueError, match="topk must be a positive int"):
        ranked_lists(distmat, query, gallery, topk=0)
    assert not os.listdir(tmp_path)
