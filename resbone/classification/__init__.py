"""The image-classification task: image folders (or a CSV / list file), a registered model, the recipe of
torchvision's references (transforms.v2, MixUp / CutMix, label smoothing), Acc@1 / Acc@5."""
