"""The classification recipe against its references: the evaluation transform equals timm's
(`resolve_data_config` + `create_transform` of the same model), the training transform equals torchvision's
reference preset (ClassificationPresetTrain, copied below) under the same seed, the batch mix is v2.MixUp /
v2.CutMix as the reference's collate applies them, and the loss with label smoothing on hard or mixed labels
is the hand-written formula."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from resbone.classification.config import load_cfg
from resbone.classification.task import ClassificationTask, model_pretrained_cfg
from resbone.classification.transforms import build_batch_mix, build_eval_transform, build_train_transform


def _image(seed: int = 0, size=(90, 70)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("opts", [[], ["INPUT.TEST_SIZE", "64", "INPUT.CROP_PCT", "0.9",
                                        "INPUT.INTERPOLATION", "bicubic"]])
def test_eval_transform_equals_timms_for_the_same_pretrained_cfg(opts):
    """timm reads mean, std, interpolation, input size and crop_pct from a pretrained_cfg as resbone does
    (resbone's resnet18 carries torchvision's: bilinear, 0.875); the config's INPUT keys override them."""
    timm = pytest.importorskip("timm")
    cfg = load_cfg(None, ["MODEL.NAME", "resnet18", *opts])
    settings = dict(model_pretrained_cfg("resnet18"))
    if opts:
        settings.update(input_size=(3, 64, 64), crop_pct=0.9, interpolation="bicubic")
    reference = timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=settings))
    mine = build_eval_transform(cfg, model_pretrained_cfg("resnet18"))
    image = _image(size=(300, 260))
    torch.testing.assert_close(mine(image), reference(image), rtol=0, atol=1e-6)


def _reference_preset_train(crop_size, *, mean, std, interpolation, hflip_prob, auto_augment_policy,
                            random_erase_prob):
    """torchvision references/classification/presets.py ClassificationPresetTrain (backend 'pil', v2), as written."""
    transforms = [v2.RandomResizedCrop(crop_size, interpolation=interpolation, antialias=True)]
    if hflip_prob > 0:
        transforms.append(v2.RandomHorizontalFlip(hflip_prob))
    if auto_augment_policy == "ra":
        transforms.append(v2.RandAugment(interpolation=interpolation))
    elif auto_augment_policy == "ta_wide":
        transforms.append(v2.TrivialAugmentWide(interpolation=interpolation))
    transforms.append(v2.PILToTensor())
    transforms.extend([v2.ToDtype(torch.float, scale=True), v2.Normalize(mean=mean, std=std)])
    if random_erase_prob > 0:
        transforms.append(v2.RandomErasing(p=random_erase_prob))
    transforms.append(v2.ToPureTensor())
    return v2.Compose(transforms)


@pytest.mark.parametrize("policy", ["ta_wide", "ra"])
def test_train_transform_equals_torchvisions_reference_preset(policy):
    cfg = load_cfg(None, ["MODEL.NAME", "resnet18", "INPUT.SIZE", "48", "INPUT.AUTO_AUGMENT", policy,
                          "INPUT.RANDOM_ERASE", "0.5"])
    mine = build_train_transform(cfg, model_pretrained_cfg("resnet18"))
    reference = _reference_preset_train(48, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                        interpolation=InterpolationMode.BILINEAR, hflip_prob=0.5,
                                        auto_augment_policy=policy, random_erase_prob=0.5)
    for seed in range(4):
        image = _image(seed)
        torch.manual_seed(seed)
        got = mine(image)
        torch.manual_seed(seed)
        torch.testing.assert_close(got, reference(image), rtol=0, atol=0)


@pytest.mark.parametrize("mixup, cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_batch_mix_is_torchvisions_mixup_cutmix(mixup, cutmix):
    cfg = load_cfg(None, ["INPUT.MIXUP_ALPHA", str(mixup), "INPUT.CUTMIX_ALPHA", str(cutmix)])
    mix = build_batch_mix(cfg, 5)
    batch = [(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(i)), i % 5) for i in range(6)]
    # the reference's train.py: RandomChoice of the ones asked for, after default_collate
    choices = ([v2.MixUp(alpha=mixup, num_classes=5)] if mixup else []) + \
        ([v2.CutMix(alpha=cutmix, num_classes=5)] if cutmix else [])
    reference = v2.RandomChoice(choices) if len(choices) > 1 else choices[0]
    for seed in range(3):
        torch.manual_seed(seed)
        images, labels = mix(*torch.utils.data.default_collate(batch))
        torch.manual_seed(seed)
        ref_images, ref_labels = reference(*torch.utils.data.default_collate(batch))
        torch.testing.assert_close(images, ref_images, rtol=0, atol=0)
        torch.testing.assert_close(labels, ref_labels, rtol=0, atol=0)
        assert labels.shape == (6, 5) and torch.allclose(labels.sum(1), torch.ones(6))
    assert build_batch_mix(load_cfg(None, []), 5) is None


@pytest.mark.parametrize("soft", [False, True])
def test_label_smoothing_loss_is_the_formula(soft):
    """CE with smoothing eps: the target (1 - eps) * y + eps / K, against -sum(target * log_softmax)."""
    task = ClassificationTask()
    task.label_smoothing = 0.1
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    target = F.one_hot(labels, 5).float()
    if soft:  # a MixUp target: two classes, weights 0.7 / 0.3
        target = 0.7 * target + 0.3 * target.roll(1, dims=0)
    model = torch.nn.Identity()
    loss = task.losses(model, (logits, target if soft else labels))["loss_cls"]
    smoothed = 0.9 * target + 0.1 / 5
    expected = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
