"""Fixtures of the int8 tests: a resnet18 trained for a few seconds on crops of the generated shapes set (real
rendered images): quantization error matters on a trained network (random weights give near-uniform logits,
where top-1 means nothing)."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from resbone.factory import create_model

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def shape_crops(root: str, split: str, num_images: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Every object of a generated shapes split, cropped to its box, resized, normalized; its class."""
    from resbone.detection.data.dataset import read_image
    from resbone.detection.data.shapes import generate_shapes_split

    with open(generate_shapes_split(root, split, num_images=num_images, image_size=64)) as f:
        annotations = json.load(f)["annotations"]
    images, labels = [], []
    for a in annotations:
        x, y, w, h = a["bbox"]
        if min(w, h) < 6:  # a sliver left by occlusion shows no shape
            continue
        crop = read_image(os.path.join(root, split, f"{a['image_id']:06d}.png"))[:, y:y + h, x:x + w]
        images.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)[0])
        labels.append(a["category_id"] - 1)
    return (torch.stack(images) - MEAN) / STD, torch.tensor(labels)


@pytest.fixture(scope="session")
def shape_data(tmp_path_factory):
    """(training crops, their labels, validation crops, their labels)."""
    root = str(tmp_path_factory.mktemp("shapes"))
    return (*shape_crops(root, "train", 80), *shape_crops(root, "val", 30))


@pytest.fixture(scope="session")
def trained(shape_data):
    """(float resnet18 trained on shape crops, calibration batches, validation crops, labels)."""
    train_x, train_y, val_x, val_y = shape_data
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(45):
        index = torch.randint(0, len(train_y), (32,), generator=g)
        loss = F.cross_entropy(model(train_x[index]), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    calibration = list(train_x[:128].split(32))
    return model, calibration, val_x, val_y
