"""int8 top-1 agreement with float32 on real validation images of the generated textures set (the classification
demo's data, at 32 px): a resnet18 trained for 125 steps (about 20 s on one core) reaches 2.4x chance, and its
int8 copy, calibrated on training images, must keep its predictions wherever float32's are not near-ties."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from resbone.classification.data.textures import TEXTURE_CLASSES, generate_textures
from resbone.deploy import quantize
from resbone.factory import create_model


def _images(folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    transform = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = ImageFolder(folder, transform=transform)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


@pytest.mark.slow
def test_int8_keeps_top1_on_textures_validation_images(tmp_path):
    folders = generate_textures(str(tmp_path), num_train=100, num_val=10, image_size=32)
    (train_x, train_y), (val_x, val_y) = _images(folders["train"]), _images(folders["val"])
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=len(TEXTURE_CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(125):
        index = torch.randint(0, len(train_y), (32,), generator=g)
        flip = torch.rand(32, generator=g) < 0.5
        images = torch.where(flip[:, None, None, None], train_x[index].flip(3), train_x[index])
        loss = F.cross_entropy(model(images), train_y[index], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    order = torch.randperm(len(train_y), generator=g)[:128]  # every class among the calibration images
    int8 = quantize(model, list(train_x[order].split(32)))
    with torch.no_grad():
        ref, out = model(val_x), int8(val_x)
    float_acc = float((ref.argmax(1) == val_y).float().mean())
    int8_acc = float((out.argmax(1) == val_y).float().mean())
    agreement = float((ref.argmax(1) == out.argmax(1)).float().mean())
    # a model this briefly trained has near-ties; where float32's two best logits are more than 4 int8 output
    # steps apart (the error of ~20 requantized layers), int8 must pick the same class
    top2 = ref.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 4 * float(int8.fc.scale)
    print(f"\ntextures val ({len(val_y)} images, 32 px): Acc@1 float32 {float_acc:.3f}, int8 {int8_acc:.3f}, "
          f"top-1 agreement {agreement:.3f}; {int(clear.sum())} with a clear float32 top-1, all kept: "
          f"{bool(torch.equal(ref.argmax(1)[clear], out.argmax(1)[clear]))}")
    assert float_acc > 2 / len(TEXTURE_CLASSES), "not above chance: agreement would prove nothing"
    assert agreement >= 0.9 and clear.float().mean() >= 0.5
    assert torch.equal(ref.argmax(1)[clear], out.argmax(1)[clear])
    assert abs(int8_acc - float_acc) <= 3 / len(val_y)
