"""Detection data: the shapes generator, the COCO-json dataset, flip, collate, the catalog, file errors."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from resbone.detection.data import SHAPE_CLASSES, COCODetection, collate, generate_shapes_split, hflip, resolve_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    ann = generate_shapes_split(str(out), "train", num_images=12, image_size=96, seed=3)
    return str(out), ann


def _digest(folder: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            h.update(handle.read())
    return h.hexdigest()


def test_shapes_are_deterministic_per_seed(shapes, tmp_path):
    out, ann = shapes
    again = generate_shapes_split(str(tmp_path / "a"), "train", num_images=12, image_size=96, seed=3)
    other = generate_shapes_split(str(tmp_path / "b"), "train", num_images=12, image_size=96, seed=4)
    assert _digest(os.path.join(out, "train")) == _digest(str(tmp_path / "a" / "train"))
    assert json.load(open(ann))["annotations"] == json.load(open(again))["annotations"]
    assert _digest(os.path.join(out, "train")) != _digest(str(tmp_path / "b" / "train"))
    assert json.load(open(ann))["annotations"] != json.load(open(other))["annotations"]


def test_shapes_annotations_are_valid_coco(shapes):
    """Every class appears, boxes lie inside the image and tightly around the object's pixels (the
    object differs from the background there), sizes span small to medium."""
    out, ann = shapes
    data = json.load(open(ann))
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    sides = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and w >= 1 and h >= 1
        assert 16 <= a["area"] <= w * h and a["iscrowd"] == 0
        sides.append(max(w, h))
    assert min(sides) < 16 and max(sides) > 48
    for image in data["images"]:
        assert Image.open(os.path.join(out, "train", image["file_name"])).size == (96, 96)


def test_dataset_sample_matches_json(shapes):
    out, ann = shapes
    dataset = COCODetection(ann, os.path.join(out, "train"))
    data = json.load(open(ann))
    image, target = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, 96, 96) and 0 <= image.min() <= image.max() <= 1
    expected = torch.tensor(np.asarray(Image.open(os.path.join(out, "train", "000001.png")).convert("RGB")),
                            dtype=torch.float32).permute(2, 0, 1) / 255
    torch.testing.assert_close(image, expected, rtol=0, atol=0)
    anns = [a for a in data["annotations"] if a["image_id"] == target["image_id"]]
    xyxy = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                         for a in anns], dtype=torch.float32)
    torch.testing.assert_close(target["boxes"], xyxy, rtol=0, atol=0)
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [a["category_id"] for a in anns]


def test_hflip_by_hand():
    image = torch.arange(2 * 5, dtype=torch.float32).reshape(1, 2, 5).expand(3, 2, 5)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.5, 0.0, 5.0, 2.0]])
    flipped, fboxes = hflip(image, boxes)
    assert flipped[0, 0].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert fboxes.tolist() == [[3.0, 0.0, 5.0, 1.0], [0.0, 0.0, 3.5, 2.0]]


def test_flip_probability_one_flips_and_is_seeded(shapes):
    out, ann = shapes
    plain = COCODetection(ann, os.path.join(out, "train"))
    flipping = COCODetection(ann, os.path.join(out, "train"), flip_prob=1.0)
    (image, target), (fimage, ftarget) = plain[2], flipping[2]
    expected_image, expected_boxes = hflip(image, target["boxes"])
    torch.testing.assert_close(fimage, expected_image, rtol=0, atol=0)
    torch.testing.assert_close(ftarget["boxes"], expected_boxes, rtol=0, atol=0)
    half = COCODetection(ann, os.path.join(out, "train"), flip_prob=0.5, seed=1)
    first = [half[i][1]["boxes"] for i in range(len(half))]
    again = [half[i][1]["boxes"] for i in range(len(half))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_collate_keeps_lists(shapes):
    out, ann = shapes
    dataset = COCODetection(ann, os.path.join(out, "train"))
    images, targets = collate([dataset[0], dataset[1]])
    assert isinstance(images, list) and len(images) == 2 and targets[1]["image_id"] == dataset.ids[1]


def test_missing_and_corrupt_images_name_the_file(shapes, tmp_path):
    out, ann = shapes
    data = json.load(open(ann))
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / data["images"][0]["file_name"]).write_bytes(b"not a png at all")
    dataset = COCODetection(ann, str(folder))
    with pytest.raises(ValueError, match=r"000001\.png cannot be read as an image"):
        dataset[0]
    with pytest.raises(ValueError, match=r"000002\.png does not exist"):
        dataset[1]
    with pytest.raises(ValueError, match=r"annotation file .*nope\.json does not exist"):
        COCODetection(str(tmp_path / "nope.json"), str(folder))


def test_shapes_names_generate_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("RESBONE_DATA", str(tmp_path))
    settings = dict(num_train=3, num_val=2, image_size=64, seed=0)
    image_dir, ann = resolve_dataset("shapes_val", shapes=settings)
    assert ann.startswith(str(tmp_path)) and len(json.load(open(ann))["images"]) == 2
    assert sorted(os.listdir(image_dir)) == ["000001.png", "000002.png"]
    mtime = os.path.getmtime(ann)
    assert resolve_dataset("shapes_val", shapes=settings) == (image_dir, ann)
    assert os.path.getmtime(ann) == mtime  # not generated again
    with pytest.raises(KeyError, match=r"unknown data set 'shapes_tst'.*shapes_train"):
        resolve_dataset("shapes_tst")
    with pytest.raises(ValueError, match=r"coco_2017_val.*instances_val2017\.json does not exist"):
        resolve_dataset("coco_2017_val")


def test_boxes_are_clipped_to_the_image_and_empty_ones_dropped(tmp_path):
    """A box wholly outside its image used to reach the detector as x2 < x1 and fail there; it is now
    dropped, as maskrcnn-benchmark's clip_to_image(remove_empty=True) does. Hand-computed boxes."""
    os.makedirs(tmp_path / "images")
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    anns = [[2, 2, 5, 5], [15, 5, 10, 10], [25, 0, 5, 5]]  # inside, half outside, wholly outside
    coco = dict(images=[dict(id=1, file_name="a.png", width=20, height=10)],
                categories=[dict(id=3, name="thing")],
                annotations=[dict(id=i + 1, image_id=1, category_id=3, bbox=b, area=b[2] * b[3], iscrowd=0)
                             for i, b in enumerate(anns)])
    json.dump(coco, open(tmp_path / "ann.json", "w"))
    _, target = COCODetection(str(tmp_path / "ann.json"), str(tmp_path / "images"))[0]
    assert target["boxes"].tolist() == [[2.0, 2.0, 7.0, 7.0], [15.0, 5.0, 20.0, 10.0]]
    assert target["labels"].tolist() == [1, 1]


def test_shapes_into_a_file_is_a_clear_error(tmp_path):
    """`resbone data shapes --out FILE` (or DATASETS.ROOT a file) used to end in a FileExistsError /
    NotADirectoryError traceback from os.makedirs."""
    (tmp_path / "notes.txt").write_text("mine")
    for out_dir in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "shapes"):  # the folder, or above it
        with pytest.raises(ValueError, match=r"cannot create the shapes set's folder .*notes\.txt"):
            generate_shapes_split(str(out_dir), "train", num_images=1, image_size=32)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_annotation_of_an_unlisted_category_names_it(tmp_path):
    """An annotation whose category_id is not in `categories` used to fail with a bare `KeyError: 9`."""
    os.makedirs(tmp_path / "images")
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    coco = dict(images=[dict(id=1, file_name="a.png", width=20, height=10)], categories=[dict(id=3, name="thing")],
                annotations=[dict(id=5, image_id=1, category_id=9, bbox=[1, 1, 4, 4], area=16, iscrowd=0)])
    json.dump(coco, open(tmp_path / "ann.json", "w"))
    with pytest.raises(KeyError, match=r"annotation 5 of .*ann\.json has category_id 9.*\[3\]"):
        COCODetection(str(tmp_path / "ann.json"), str(tmp_path / "images"))[0]
