"""Classification data: an image folder reads as torchvision's ImageFolder does, a CSV / list file gives the same
samples, and a bad set is refused with a sentence: an empty class, an unreadable image (named), classes that
differ between the training and the test set; the generated textures set is seeded and balanced."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from resbone.classification.data import TEXTURE_CLASSES, open_labelled_images
from resbone.classification.task import ClassificationTrainer
from tests.classification.helpers import tiny_cfg, tiny_textures


def test_a_folder_reads_as_torchvisions_imagefolder(tmp_path):
    data = tiny_textures(tmp_path)
    mine, theirs = open_labelled_images(data["train"], what="DATASETS.TRAIN"), ImageFolder(data["train"])
    assert mine.classes == theirs.classes == sorted(TEXTURE_CLASSES)
    assert mine.samples == theirs.samples and mine.targets == theirs.targets
    image, label = mine[3]
    assert image.tobytes() == theirs[3][0].tobytes() and label == theirs[3][1]


@pytest.mark.parametrize("suffix, separator, header", [(".csv", ",", "path,label\n"), (".txt", " ", "")])
def test_a_list_file_gives_the_folders_samples(tmp_path, suffix, separator, header):
    data = tiny_textures(tmp_path)
    folder = open_labelled_images(data["train"], what="DATASETS.TRAIN")
    listing = tmp_path / f"train{suffix}"
    rows = [f"{os.path.relpath(path, tmp_path)}{separator}{folder.classes[label]}\n" for path, label in folder.samples]
    listing.write_text(header + "".join(rows))
    from_file = open_labelled_images(str(listing), what="DATASETS.TRAIN")
    assert from_file.classes == folder.classes
    assert [(os.path.realpath(p), y) for p, y in from_file.samples] == \
        [(os.path.realpath(p), y) for p, y in folder.samples]


def test_an_empty_class_is_named(tmp_path):
    data = tiny_textures(tmp_path)
    os.makedirs(os.path.join(data["train"], "zebra"))
    with pytest.raises(ValueError, match=r"class folder\(s\) zebra hold no image"):
        open_labelled_images(data["train"], what="DATASETS.TRAIN")


def test_an_unreadable_image_is_named(tmp_path):
    data = tiny_textures(tmp_path)
    broken = os.path.join(data["train"], "circle_checker", "000000.png")
    with open(broken, "wb") as handle:
        handle.write(b"\x89PNG cut short")
    dataset = open_labelled_images(data["train"], what="DATASETS.TRAIN")
    index = [path for path, _ in dataset.samples].index(broken)
    with pytest.raises(ValueError, match=rf"image {broken} of .* cannot be read"):
        dataset[index]
    # in a training run too: the batch that holds it stops the run with the same sentence
    cfg = tiny_cfg(data, str(tmp_path / "run"), "SOLVER.IMS_PER_BATCH", "12", "SOLVER.MAX_ITER", "1")
    with pytest.raises(ValueError, match=rf"image {broken} of .* cannot be read"):
        ClassificationTrainer(cfg).train()


def test_train_and_test_classes_must_match_before_training(tmp_path):
    data = tiny_textures(tmp_path)
    shutil.rmtree(os.path.join(data["val"], "square_stripes"))
    with pytest.raises(ValueError, match=r"only in training \['square_stripes'\], only in .*val none"):
        ClassificationTrainer(tiny_cfg(data, str(tmp_path / "run")))
    assert not os.path.exists(tmp_path / "run" / "model_final.pth")


def test_missing_or_empty_sources_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"DATASETS.TRAIN .*nowhere does not exist"):
        open_labelled_images(str(tmp_path / "nowhere"), what="DATASETS.TRAIN")
    with pytest.raises(ValueError, match="DATASETS.TRAIN is empty"):
        open_labelled_images("", what="DATASETS.TRAIN")
    with pytest.raises(ValueError, match="has no class sub-folder"):
        open_labelled_images(str(tmp_path), what="DATASETS.TRAIN")
    (tmp_path / "list.csv").write_text("a.png,cat,extra\n")
    with pytest.raises(ValueError, match=r"line 1: expected `path,label`"):
        open_labelled_images(str(tmp_path / "list.csv"), what="DATASETS.TRAIN")


def test_the_textures_set_is_seeded_and_balanced(tmp_path):
    first, second = tiny_textures(tmp_path / "a", per_class=3), tiny_textures(tmp_path / "b", per_class=3)
    a, b = ImageFolder(first["train"]), ImageFolder(second["train"])
    assert a.classes == sorted(TEXTURE_CLASSES) and len(TEXTURE_CLASSES) == 6
    assert torch.bincount(torch.tensor(a.targets)).tolist() == [3] * 6
    assert all(x[0].tobytes() == y[0].tobytes() for x, y in zip(a, b))
    # no class owns a colour: within each class the images' mean colours lie far apart
    means = {c: [] for c in range(6)}
    for image, label in a:
        means[label].append(torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape(-1, 3).mean(0))
    assert all(torch.cdist(torch.stack(m), torch.stack(m)).max() > 30 for m in means.values())


def test_seeded_augmentations_depend_on_seed_epoch_and_index_only(tmp_path):
    """A seeded set's random transform of sample i in epoch e is the reference transform under
    torch.manual_seed(hash((seed, e, i)) & 0x7FFFFFFF), whatever was drawn before, and the caller's RNG stays put."""
    from torchvision.transforms import v2

    data = tiny_textures(tmp_path)
    transform = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(24, antialias=True), v2.RandomHorizontalFlip()])
    images = open_labelled_images(data["train"], what="DATASETS.TRAIN", transform=transform, seed=7)
    images.set_epoch(2)
    torch.manual_seed(123)
    first = images[5][0]
    torch.rand(10)
    again = images[5][0]
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(10)
    assert torch.equal(after, torch.rand(3))  # the samples drew nothing from the caller's RNG
    torch.manual_seed(hash((7, 2, 5)) & 0x7FFFFFFF)
    reference = transform(images.load(5))
    assert torch.equal(first, reference) and torch.equal(again, reference)
    images.set_epoch(3)
    assert not torch.equal(images[5][0], reference)  # a new epoch, new crops
