"""`load_detector` / `predict_images` (behind `resbone eval` and `resbone predict`): weights that do not
fit the configured detector are refused instead of leaving random tensors behind, and no drawing ever
replaces one of the user's input images."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from resbone.detection.config import load_cfg
from resbone.detection.predictor import load_detector, predict_images
from resbone.detection.task import build_detector_with_weight

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "resbone", "configs", "fcos", "shapes_R_18_FPN.yaml")
NARROW = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CONVS", "1",
          "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "detector.pth")
    torch.save(build_detector_with_weight(load_cfg(CONFIG, NARROW)).state_dict(), path)
    return path


def _png(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_matching_weights_load_exactly(weights):
    model, class_names = load_detector(load_cfg(CONFIG, NARROW), weights)
    saved = torch.load(weights, weights_only=True)
    assert class_names is None  # a plain state_dict records none
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_weights_of_another_detector_are_refused(weights):
    # trained with 3 classes + background; a config with 2 + background would keep a random cls_logits
    with pytest.raises(ValueError, match=r"do not fit the detector.*cls_logits.*trained with"):
        load_detector(load_cfg(CONFIG, [*NARROW, "MODEL.FCOS.NUM_CLASSES", "3"]), weights)


def test_a_directory_as_weights_names_the_checkpoint_to_pass(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory.*model_final\.pth"):
        load_detector(load_cfg(CONFIG, NARROW), str(tmp_path))


def test_predict_never_overwrites_an_input_image(tmp_path, weights):
    image = _png(tmp_path / "photos" / "a.png")
    before = _md5(image)
    with pytest.raises(ValueError, match=r"would overwrite the input image"):
        predict_images(load_cfg(CONFIG, NARROW), weights, [image], str(tmp_path / "photos"), score_threshold=0.0)
    assert _md5(image) == before


def test_predict_refuses_two_images_drawn_to_one_file(tmp_path, weights):
    images = [_png(tmp_path / "a" / "x.png"), _png(tmp_path / "b" / "x.jpg")]
    with pytest.raises(ValueError, match=r"would both be drawn to"):
        predict_images(load_cfg(CONFIG, NARROW), weights, images, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_predict_writes_one_drawing_per_image(tmp_path, weights):
    image = _png(tmp_path / "photos" / "a.png")
    written = predict_images(load_cfg(CONFIG, NARROW), weights, [image], str(tmp_path / "out"))
    assert written == [str(tmp_path / "out" / "a.png")]
    assert Image.open(written[0]).size == (384, 384)  # enlarged 6x: labels readable (issue 10 item 7)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_score_threshold_outside_0_1_is_refused(tmp_path, weights, threshold):
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\]"):
        predict_images(load_cfg(CONFIG, NARROW), weights, [_png(tmp_path / "a.png")], str(tmp_path / "out"),
                       score_threshold=threshold)


def test_detector_pickle_loads_without_class_names(tmp_path, weights):
    """A .pkl of the detector (detectron2-style {'model': numpy arrays}) loads through resbone.convert;
    the class-name lookup used to torch.load it afterwards and fail with 'cannot be read safely'."""
    import pickle

    saved = torch.load(weights, weights_only=True)
    path = str(tmp_path / "detector.pkl")
    with open(path, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in saved.items()}}, handle)
    model, class_names = load_detector(load_cfg(CONFIG, NARROW), path)
    assert class_names is None
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_model_weight_of_the_config_is_not_needed(weights):
    """FCOS's own configs name a catalog:// backbone in MODEL.WEIGHT; `resbone eval/predict --weights W`
    used to refuse them ('download the file yourself') although W replaces it (FCOS test_net.py --ckpt)."""
    cfg = load_cfg(CONFIG, [*NARROW, "MODEL.WEIGHT", "catalog://ImageNetPretrained/MSRA/R-50"])
    model, _ = load_detector(cfg, weights)
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def _shapes_cfg(tmp_path, *extra):
    return load_cfg(CONFIG, [*NARROW, "DATASETS.ROOT", str(tmp_path / "data"), "DATASETS.SHAPES.NUM_TRAIN", "2",
                             "DATASETS.SHAPES.NUM_VAL", "4", "DATASETS.SHAPES.IMAGE_SIZE", "64", *extra])


def test_predict_with_ground_truth_draws_truth_beside_prediction(tmp_path, weights):
    """--gt: an image of the config's data sets is drawn as ground truth | prediction, each enlarged 6x
    (64 -> 384 px) under a title strip; an image in no known set is refused by name."""
    from resbone.detection.data import resolve_dataset
    from resbone.detection.data.build import shapes_settings
    from resbone.detection.predictor import find_ground_truth

    cfg = _shapes_cfg(tmp_path)
    image_dir, ann_file = resolve_dataset("shapes_val", root=cfg.DATASETS.ROOT, shapes=shapes_settings(cfg))
    image = os.path.join(image_dir, "000002.png")
    truth = find_ground_truth(cfg, [image])[image]
    coco = json.load(open(ann_file))
    expected = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 2]
    assert [[x, y, x2 - x, y2 - y] for x, y, x2, y2 in truth["boxes"].tolist()] == expected  # whole pixels
    drawn = Image.open(predict_images(cfg, weights, [image], str(tmp_path / "out"), show_gt=True)[0])
    assert drawn.width == 2 * 384 + 8 and drawn.height > 384
    with pytest.raises(ValueError, match=r"a\.png is not among the images of the data sets of the config"):
        find_ground_truth(cfg, [_png(tmp_path / "elsewhere" / "a.png")])


def test_validation_grid_has_one_pair_per_image(tmp_path, weights):
    from resbone.detection.predictor import draw_validation_grid

    path = draw_validation_grid(_shapes_cfg(tmp_path), weights, str(tmp_path / "out"), num_images=3, columns=2)
    assert path == str(tmp_path / "out" / "grid_shapes_val.png")
    grid = Image.open(path)
    pair = 2 * 192 + 8  # each image enlarged 3x to 192 px, truth | prediction
    assert grid.width == 2 * pair + 16 and 2 * 192 + 16 < grid.height < 2 * 192 + 16 + 2 * 40


def test_labels_stay_inside_the_image_and_off_each_other():
    from PIL import ImageDraw, ImageFont

    from resbone.detection.visualize import _label_spot

    draw = ImageDraw.Draw(Image.new("RGB", (384, 384)))
    font = ImageFont.load_default(size=14)
    placed = []
    for box in ([340, 0, 384, 30], [340, 0, 384, 30], [0, 370, 20, 384]):  # top-right corner twice, bottom-left
        spot = _label_spot(draw, "triangle 0.97", font, box, (384, 384), placed)
        assert 0 <= spot[0] < spot[2] <= 384 and 0 <= spot[1] < spot[3] <= 384, spot
        assert not any(spot[0] < p[2] and p[0] < spot[2] and spot[1] < p[3] and p[1] < spot[3] for p in placed)
        placed.append(spot)
