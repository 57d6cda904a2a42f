"""Feature extraction with resbone: an mmdetection-style backbone returning C2..C5 with strides."""
import torch

import resbone

backbone = resbone.create_model("resnet50", num_classes=None, frozen_stages=1, norm_eval=True).eval()
with torch.no_grad():
    features = backbone(torch.randn(1, 3, 224, 224))
for info, fmap in zip(backbone.feature_info, features):
    print(f"{info['module']}: stride {info['stride']:>2}, {info['channels']:>4} channels, map {tuple(fmap.shape)}")
trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
print(f"trainable parameters with frozen_stages=1: {trainable:,} of {sum(p.numel() for p in backbone.parameters()):,}")
