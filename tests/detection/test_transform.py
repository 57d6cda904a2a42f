"""The detector's transform: FCOS's caffe-style input (BGR, 0..255, mean subtracted), torchvision's
resize rule and padding (checked against torchvision's GeneralizedRCNNTransform), boxes there and back."""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from resbone.detection.transform import DetectionTransform, resize_boxes

FCOS_MEAN = [102.9801, 115.9465, 122.7717]


def _transform(**kw):
    args = dict(min_size_train=(64,), max_size_train=100, min_size_test=64, max_size_test=100,
                pixel_mean=FCOS_MEAN, pixel_std=[1.0, 1.0, 1.0], to_bgr255=True, size_divisibility=32)
    args.update(kw)
    return DetectionTransform(**args).eval()


def test_bgr255_by_hand():
    """A constant RGB image (0.2, 0.4, 0.6) becomes BGR 0..255 minus FCOS's mean, at any size."""
    image = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, 32, 48).contiguous()
    batch, sizes, _ = _transform()([image])
    expected = torch.tensor([0.6 * 255 - FCOS_MEAN[0], 0.4 * 255 - FCOS_MEAN[1], 0.2 * 255 - FCOS_MEAN[2]])
    h, w = sizes[0]
    torch.testing.assert_close(batch[0, :, :h, :w], expected.view(3, 1, 1).expand(3, h, w), rtol=0, atol=1e-3)
    assert float(batch[0, :, h:, :].abs().sum() + batch[0, :, :, w:].abs().sum()) == 0.0  # zero padding


@pytest.mark.parametrize("shape", [(3, 50, 70), (3, 90, 30), (3, 64, 64)])
def test_resize_and_padding_match_torchvision(shape):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    tv = GeneralizedRCNNTransform(64, 100, mean, std, size_divisible=32).eval()
    ours = _transform(pixel_mean=mean, pixel_std=std, to_bgr255=False)
    images = [torch.rand(shape), torch.rand(3, 40, 41)]
    expected, _ = tv(images)
    batch, sizes, _ = ours(images)
    assert sizes == expected.image_sizes
    assert batch.shape[-2] % 32 == 0 and batch.shape[-1] % 32 == 0
    torch.testing.assert_close(batch, expected.tensors, rtol=0, atol=1e-5)


def test_max_size_caps_the_longer_side():
    _, sizes, _ = _transform()([torch.rand(3, 20, 100)])  # short side 64 would make the long side 320
    assert sizes == [(20, 100)]


def test_training_draws_min_size_among_the_choices_and_resizes_boxes():
    transform = _transform(min_size_train=(32, 48, 64), max_size_train=1000).train()
    image = torch.rand(3, 40, 80)
    boxes = torch.tensor([[10.0, 4.0, 30.0, 36.0]])
    seen = set()
    torch.manual_seed(0)
    for _ in range(20):
        _, sizes, targets = transform([image], [dict(boxes=boxes, labels=torch.tensor([1]))])
        (h, w), = sizes
        seen.add(h)
        torch.testing.assert_close(targets[0]["boxes"], boxes * torch.tensor([w / 80, h / 40, w / 80, h / 40]))
    assert seen == {32, 48, 64}


def test_boxes_round_trip():
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    there = resize_boxes(boxes, (40, 50), (64, 80))
    torch.testing.assert_close(there, torch.tensor([[1.6, 3.2, 48.0, 64.0]]))
    torch.testing.assert_close(resize_boxes(there, (64, 80), (40, 50)), boxes)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="INPUT sizes"):
        _transform(min_size_test=0)
    with pytest.raises(ValueError, match="PIXEL_MEAN"):
        _transform(pixel_mean=[1.0, 2.0])
    with pytest.raises(ValueError, match="SIZE_DIVISIBILITY"):
        _transform(size_divisibility=-1)


def test_image_too_thin_to_resize_is_a_clear_error():
    """A 600x2 image at MIN 96 / MAX 96 scales by 96/600 = 0.16 to 96x0.32 -> 96x0 pixels: this used to
    fail inside F.interpolate with a RuntimeError; a 600x7 one still works (96x1.12 -> 96x1)."""
    transform = _transform(min_size_test=96, max_size_test=96)
    with pytest.raises(ValueError, match=r"image 0 \(600x2 pixels\) would be resized to 96x0"):
        transform([torch.rand(3, 600, 2)])
    _, sizes, _ = transform([torch.rand(3, 600, 7)])
    assert sizes == [(96, 1)]
