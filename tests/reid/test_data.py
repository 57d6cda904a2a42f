"""Market-1501's and DukeMTMC-reID's folders read as torchreid's Market1501 / DukeMTMCreID read them (same
images, identities, cameras from 0), junk kept in the gallery for the metric to exclude; names that break the
naming and query identities missing from the gallery are errors that name them; the transforms' output."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from resbone.reid.data import ReidImages, parse_name, read_reid_folder, reid_transforms
from tests.reid.references import torchreid


@pytest.mark.parametrize("name, naming, expected", [
    ("0002_c1s1_000451_03.jpg", "market1501", (2, 0)),
    ("-1_c3s2_000126_01.jpg", "market1501", (-1, 2)),
    ("0000_c6s1_001231_04.jpg", "market1501", (0, 5)),
    ("/data/market/query/1501_c6s4_001902_01.jpg", "market1501", (1501, 5)),
    ("0001_c2_f0046182.jpg", "dukemtmc", (1, 1)),
    ("7140_c8_f0097000.jpg", "dukemtmc", (7140, 7)),
])
def test_names_give_identity_and_camera_from_zero(name, naming, expected):
    assert parse_name(name, naming) == expected


@pytest.mark.parametrize("name, naming", [("0002_c1_f0046182.jpg", "market1501"), ("person.jpg", "market1501"),
                                          ("0002_c1s1_000451_03.jpg", "dukemtmc"),
                                          ("0002_c0s1_000451_03.jpg", "market1501")])
def test_a_name_off_the_naming_is_named(name, naming):
    with pytest.raises(ValueError, match=f"'{name}' does not follow {naming}'s file naming"):
        parse_name(name, naming)


def _as_tuples(items):
    return sorted((item.path, item.pid, item.camid) for item in items)


def test_market1501_folder_as_torchreid_reads_it(reid_set):
    ours = read_reid_folder(reid_set)
    reader = torchreid().Market1501.process_dir
    for split, folder in (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test")):
        theirs = sorted(reader(None, os.path.join(reid_set, folder), relabel=False))
        assert _as_tuples(i for i in ours[split] if i.pid != -1) == theirs, split  # torchreid drops the junk
    assert any(i.pid == -1 for i in ours["gallery"]) and any(i.pid == 0 for i in ours["gallery"])
    pids = sorted({i.pid for i in ours["train"]})
    assert all(i.label == pids.index(i.pid) for i in ours["train"])  # 0..N-1 in identity order
    assert {i.label for i in ours["query"] + ours["gallery"]} == {-1}


def test_dukemtmc_folder_as_torchreid_reads_it(reid_set, tmp_path):
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(tmp_path / folder)
        for frame, name in enumerate(sorted(os.listdir(os.path.join(reid_set, folder)))):
            pid, camid = parse_name(name)
            if pid > 0:  # DukeMTMC-reID has no junk or distractor identities
                shutil.copy(os.path.join(reid_set, folder, name), tmp_path / folder / f"{pid:04d}_c{camid + 1}_"
                                                                                      f"f{frame:07d}.jpg")
    ours = read_reid_folder(tmp_path, "dukemtmc")
    reader = torchreid().DukeMTMCreID.process_dir
    assert _as_tuples(ours["gallery"]) == sorted(reader(None, str(tmp_path / "bounding_box_test"), relabel=False))
    assert _as_tuples(ours["train"]) == sorted(reader(None, str(tmp_path / "bounding_box_train"), relabel=False))


def _copy(reid_set: str, tmp_path) -> str:
    root = str(tmp_path / "copy")
    shutil.copytree(reid_set, root)
    return root


def test_bad_folders_are_named(reid_set, tmp_path):
    root = _copy(reid_set, tmp_path)
    open(os.path.join(root, "query", "Thumbs.db"), "w").close()  # Market-1501 ships one: not an image
    read_reid_folder(root)
    shutil.copy(os.path.join(root, "query", sorted(os.listdir(os.path.join(root, "query")))[0]),
                os.path.join(root, "query", "img_001.jpg"))
    with pytest.raises(ValueError, match="'img_001.jpg' does not follow market1501's file naming"):
        read_reid_folder(root)
    with pytest.raises(ValueError, match=r"naming must be one of \('market1501', 'dukemtmc'\), got 'cuhk03'"):
        read_reid_folder(root, "cuhk03")
    with pytest.raises(FileNotFoundError, match="bounding_box_train is missing"):
        read_reid_folder(tmp_path)


def test_a_query_identity_missing_from_the_gallery_is_named(reid_set, tmp_path):
    root = _copy(reid_set, tmp_path)
    query = sorted(os.listdir(os.path.join(root, "query")))[0]
    pid, camid = parse_name(query)
    for name in os.listdir(os.path.join(root, "bounding_box_test")):
        if parse_name(name)[0] == pid:
            os.remove(os.path.join(root, "bounding_box_test", name))
    with pytest.raises(ValueError, match=rf"query identities \[{pid}\] have no gallery image from another camera "
                                         r"\(1 of them are absent"):
        read_reid_folder(root)


def test_images_come_out_normalised_at_the_asked_size(reid_set):
    items = read_reid_folder(reid_set)["train"]
    image, label, pid, camid = ReidImages(items, reid_transforms((64, 32), train=False))[0]
    assert image.shape == (3, 64, 32) and image.dtype == torch.float32
    assert (label, pid, camid) == (items[0].label, items[0].pid, items[0].camid)
    assert -2.2 < image.min() < image.max() < 2.7  # ImageNet-normalised
    train = ReidImages(items, reid_transforms((64, 32), train=True, erasing=1.0))
    torch.manual_seed(0)
    erased = train[0][0]
    assert erased.shape == (3, 64, 32) and (erased == 0).all(0).sum() > 0  # an erased patch: the mean pixel
