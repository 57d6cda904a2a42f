"""hubconf.py: torch.hub.load(repo, "resnet18", pretrained=True, source="local") builds resbone's model with
torchvision's published weights (served from 127.0.0.1), as torch.hub.load("pytorch/vision", ...) does."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from tests.weights.conftest import torch_bytes

REPO = str(Path(__file__).resolve().parents[2])


def test_torch_hub_load_local_pretrained(served, any_hash):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    served.add("https://download.pytorch.org/models/resnet18-f37072fd.pth", torch_bytes(reference.state_dict()))
    model = torch.hub.load(REPO, "resnet18", pretrained=True, progress=False, source="local").eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
    assert torch.hub.load(REPO, "resnet18", source="local", num_classes=10).fc.out_features == 10
