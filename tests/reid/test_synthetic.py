"""The generated re-id set: Market-1501's layout and naming (torchreid's reader takes it), disjoint training
and test identities, every query matched in another camera, distractors and junk in the gallery; the same bytes
for the same seed; an existing folder is reused when it is this set, and never overwritten otherwise."""
from __future__ import annotations

import filecmp
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from resbone.reid.data import read_reid_folder
from resbone.reid.synthetic import generate_reid_set
from tests.reid.conftest import SMALL


def test_layout_counts_and_identities(reid_set):
    splits = read_reid_folder(reid_set)
    train_ids = {i.pid for i in splits["train"]}
    test_ids = {i.pid for i in splits["query"]}
    assert train_ids == set(range(1, 7)) and test_ids == set(range(7, 12))
    assert len(splits["train"]) == 6 * 3 * 2
    assert len(splits["query"]) == 5 * 2 and {i.camid for i in splits["query"]} == {0, 1}
    gallery = Counter(i.pid for i in splits["gallery"])
    assert gallery[0] == 4 and gallery[-1] == 3 and set(gallery) - {0, -1} == test_ids
    assert len(splits["gallery"]) == 5 * 3 * 2 - 10 + 4 + 3
    with Image.open(splits["train"][0].path) as image:
        assert image.size == (32, 64) and image.mode == "RGB"


def test_cameras_change_the_look_of_an_identity(reid_set):
    splits = read_reid_folder(reid_set)

    def mean_colour(item):
        with Image.open(item.path) as image:
            return np.asarray(image, dtype=np.float32).mean((0, 1))

    person = [i for i in splits["train"] if i.pid == 1]
    by_camera = {c: np.mean([mean_colour(i) for i in person if i.camid == c], 0) for c in range(3)}
    assert min(np.abs(by_camera[a] - by_camera[b]).max() for a in range(3) for b in range(a)) > 5


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, reid_set):
    again = generate_reid_set(tmp_path / "again", **SMALL)
    other = generate_reid_set(tmp_path / "other", **{**SMALL, "seed": 1})
    compared = filecmp.dircmp(reid_set, again)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        names = sorted(os.listdir(os.path.join(reid_set, folder)))
        match, mismatch, errors = filecmp.cmpfiles(os.path.join(reid_set, folder), os.path.join(again, folder), names,
                                                   shallow=False)
        assert len(match) == len(names) and not mismatch and not errors
        assert not filecmp.cmp(os.path.join(reid_set, folder, names[0]), os.path.join(other, folder, names[0]),
                               shallow=False)
    assert not compared.left_only and not compared.right_only


def test_an_existing_folder_is_reused_or_refused_never_overwritten(tmp_path, reid_set):
    before = os.stat(os.path.join(reid_set, "query")).st_mtime_ns
    assert generate_reid_set(reid_set, **SMALL) == reid_set
    assert os.stat(os.path.join(reid_set, "query")).st_mtime_ns == before
    assert generate_reid_set(f"{reid_set}/", **SMALL) == reid_set
    with pytest.raises(ValueError, match="exists and is a set generated with .*'seed': 0.*pass another folder"):
        generate_reid_set(reid_set, **{**SMALL, "seed": 2})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not a generated re-id set"):
        generate_reid_set(mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # no staging folder left behind


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="cameras must be an int >= 2"):
        generate_reid_set(tmp_path / "a", cameras=1)
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        generate_reid_set(tmp_path / "a", size=(256, 128))
    assert not os.path.exists(tmp_path / "a")
