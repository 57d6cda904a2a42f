"""resbone.analysis: params and MACs equal torchvision's published figures and torch's own FLOP counter;
receptive fields equal the span of input pixels with nonzero gradient; the table's rows are the paper's."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resbone.analysis import (
    count_macs,
    count_params,
    create_meta_model,
    format_table,
    model_table_markdown,
    receptive_field,
    summarize,
)
from resbone.factory import create_model

# torchvision's classifiers; the reference figures come from torchvision's weight metadata
# (`num_params`, `_ops` = GMACs at 224x224), which DESIGN.md quotes (resnet50 25,557,032 / 4.089).
TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                     "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "mobilenet_v2"]


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_params_and_macs_equal_torchvision_published_figures(name):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    model = create_meta_model(name)  # on the meta device: shapes only
    assert count_params(model) == meta["num_params"]
    assert round(count_macs(model) / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)


def test_design_figures_for_the_four_quoted_models():
    expected = {"resnet18": (11_689_512, 1.814), "resnet50": (25_557_032, 4.089),
                "resnext50_32x4d": (25_028_904, 4.230), "mobilenet_v2": (3_504_872, 0.301)}
    for name, (params, gmacs) in expected.items():
        model = create_meta_model(name)
        assert (count_params(model), round(count_macs(model) / 1e9, 3)) == (params, gmacs), name


def _flop_counter_macs(model, size=(224, 224)):
    x = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() // 2  # torch counts 2 FLOPs per multiply-add


@pytest.mark.parametrize("name, kwargs", [
    ("resnet50d", {}),                                   # deep stem + avg_down shortcut
    ("seresnet50", {}),                                  # SE: 1x1 convs on pooled maps
    ("resnet50", dict(replace_stride_with_dilation=[False, True, True], num_classes=None)),
    ("resnet50", dict(plugins=[dict(cfg=dict(type="NonLocal2d"), position="after_conv2", stages=(0, 0, 1, 0))])),
])
def test_macs_equal_torch_flop_counter(name, kwargs):
    """Independent count (aten-level, torch.utils.flop_counter) for variants torchvision does not publish:
    also covers the matrix products of non-local attention, which module hooks would miss."""
    model = create_meta_model(name, **kwargs)
    assert count_macs(model) == _flop_counter_macs(model)


def test_resnet50_table_is_the_papers():
    summary = summarize("resnet50")
    rows = {s.name: s for s in summary.stages}
    assert list(rows) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    # Table 1 of He et al. 2016 (output sizes, channels, blocks) with v1.5 strides.
    assert [rows[n].output_shape for n in list(rows)[:5]] == [(64, 56, 56), (256, 56, 56), (512, 28, 28),
                                                               (1024, 14, 14), (2048, 7, 7)]
    assert [rows[n].stride for n in list(rows)[:5]] == [(4, 4), (4, 4), (8, 8), (16, 16), (32, 32)]
    assert [rows[n].blocks for n in list(rows)] == [None, 3, 4, 6, 3, None]
    assert rows["head"].output_shape == (1000,) and rows["head"].stride is None
    # Hand-computed fields: stem 7 + 2*2 (maxpool at jump 2) = 11; each 3x3 adds 2*jump.
    assert [rows[n].receptive_field for n in list(rows)[:5]] == [(11, 11), (35, 35), (91, 91), (267, 267),
                                                                 (427, 427)]
    assert rows["head"].receptive_field == (math.inf, math.inf)
    # Rows partition the model: per-stage params from state_dict names, stem MACs by hand.
    reference = torchvision.models.resnet50()
    for n in ["layer1", "layer2", "layer3", "layer4"]:
        assert rows[n].params == sum(p.numel() for k, p in reference.named_parameters() if k.startswith(n + "."))
    assert rows["stem"].macs == 7 * 7 * 3 * 64 * 112 * 112
    assert rows["head"].macs == 2048 * 1000
    assert sum(s.params for s in summary.stages) == summary.params == 25_557_032
    assert sum(s.macs for s in summary.stages) == summary.macs == 4_089_184_256
    text = format_table(summary)
    assert "25,557,032" in text and "4.089 G" in text and "2048x7x7" in text


def test_mobilenet_v2_stages_are_the_papers_rows():
    """Table 2 of Sandler et al. 2018: (c, n) = (32,-) (16,1) (24,2) (32,3) (64,4) (96,3) (160,3) (320,1) (1280,-)."""
    stages = summarize("mobilenet_v2").stages
    assert [(s.channels, s.blocks) for s in stages[:-1]] == [(32, 1), (16, 1), (24, 2), (32, 3), (64, 4), (96, 3),
                                                              (160, 3), (320, 1), (1280, 1)]
    assert [s.output_shape[1] for s in stages[:-1]] == [112, 112, 56, 28, 14, 14, 7, 7, 7]
    assert stages[-1].name == "head" and stages[-1].output_shape == (1000,)


def test_generic_model_one_row_per_child_with_hand_computed_fields():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, stride=2), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 3, dilation=2))
    stages = summarize(model, (33, 33)).stages
    assert [s.name for s in stages] == ["0", "1", "2", "3"]
    assert [s.output_shape for s in stages] == [(8, 31, 31), (8, 15, 15), (8, 7, 7), (4, 3, 3)]
    assert [s.receptive_field[0] for s in stages] == [3, 5, 7, 7 + 2 * 2 * 4]
    assert [s.stride[0] for s in stages] == [1, 2, 4, 4]
    assert [s.macs for s in stages] == [8 * 31 * 31 * 27, 8 * 15 * 15 * 72, 0, 4 * 3 * 3 * 72]


def test_timm_models_get_the_same_rows():
    """The stage logic reads structure, not classes: timm's resnet50 gives resbone's rows, and timm's
    mobilenetv2_100 (a `blocks` sequence of stages) torchvision's totals and stage fields."""
    import timm

    with torch.device("meta"):
        timm_resnet, timm_mobilenet = timm.create_model("resnet50"), timm.create_model("mobilenetv2_100")
    assert summarize(timm_resnet).stages == summarize("resnet50").stages
    stages = summarize(timm_mobilenet).stages
    assert [s.name for s in stages] == ["stem"] + [f"blocks.{i}" for i in range(7)] + ["head"]
    assert [s.blocks for s in stages[1:-1]] == [1, 2, 3, 4, 3, 3, 1]
    assert [s.receptive_field for s in stages[1:-1]] == [
        s.receptive_field for s in summarize("mobilenet_v2").stages[1:-2]]
    assert count_macs(timm_mobilenet) == count_macs(create_meta_model("mobilenet_v2"))


def test_functional_ops_outside_children_are_a_row_of_their_own():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.weight = nn.Parameter(torch.ones(2, 4, 3, 3))

        def forward(self, x):
            return torch.nn.functional.conv2d(self.conv(x), self.weight)

    summary = summarize(Functional(), (8, 8))
    assert [(s.name, s.macs) for s in summary.stages] == [("conv", 4 * 3 * 64), ("(functional)", 2 * 36 * 36)]
    assert summary.macs == 4 * 3 * 64 + 2 * 36 * 36


# ---- receptive field against gradients ---------------------------------------------------------------
def _positive_double(model: nn.Module) -> nn.Module:
    """All-positive weights (no cancellation), BN the identity, max pooling replaced by average pooling
    of the same geometry (a max routes the gradient to one pixel per window): then an input pixel has a
    nonzero gradient exactly when some path reaches it."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    return model


def _gradient_span(model: nn.Module, size: int, modules: list[str]) -> dict[str, tuple[int, int]]:
    named = dict(model.named_modules())
    outputs = {}
    handles = [named[m].register_forward_hook(lambda mod, a, out, m=m: outputs.__setitem__(m, out)) for m in modules]
    x = torch.full((1, 3, size, size), 1e-3, dtype=torch.float64, requires_grad=True)
    model(x)
    for h in handles:
        h.remove()
    spans = {}
    for m in modules:
        out = outputs[m]
        (grad,) = torch.autograd.grad(out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum(), x, retain_graph=True)
        hit = grad[0].abs().sum(0) > 0
        rows, cols = hit.any(1).nonzero(), hit.any(0).nonzero()
        spans[m] = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
        assert int(hit.sum()) == spans[m][0] * spans[m][1], f"{m}: the reached pixels are not a full rectangle"
    return spans


@pytest.mark.parametrize("name, kwargs, size, modules", [
    ("resnet50", dict(base_channels=4, num_classes=None), 448, ["maxpool", "layer1", "layer2", "layer3", "layer4"]),
    ("resnet18d", dict(base_channels=4, num_classes=None), 448, ["maxpool", "layer2", "layer4"]),
    ("resnet50", dict(base_channels=4, num_classes=None, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)), 512,
     ["layer3", "layer4"]),
    ("resnet50", dict(base_channels=4, num_classes=None, style="caffe"), 512, ["layer4"]),
    ("mobilenet_v2", dict(width_mult=0.25), 512, ["features.3", "features.13", "features.18"]),
])
def test_receptive_field_equals_gradient_span(name, kwargs, size, modules):
    """The analytic field at a stage's output is exactly the side of the square of input pixels with a
    nonzero gradient for its central pixel (thin widths: the field does not depend on channels).
    By hand for resnet50 layer4: 11 (stem) + 3*8 + (8 + 3*16) + (16 + 5*32) + (32 + 2*64) = 427."""
    model = create_model(name, **kwargs)
    analytic = receptive_field(model, (size, size), modules=modules)
    spans = _gradient_span(_positive_double(model), size, modules)
    assert {m: tuple(int(v) for v in analytic[m]) for m in modules} == spans
    assert all(s < size for span in spans.values() for s in span), "the field must fit inside the input"
    if name == "resnet50" and list(kwargs) == ["base_channels", "num_classes"]:
        assert analytic["layer4"] == (427, 427)
    if kwargs.get("style") == "caffe":  # stride in the 1x1: each stage's first 3x3 already sees the coarse grid
        assert analytic["layer4"] == (483, 483)


@pytest.mark.parametrize("name", ["seresnet50", "resnet50_ibn_a"])
def test_global_context_field_is_global_and_gradients_agree(name):
    """SE's pooled gate and IBN's InstanceNorm statistics let every input pixel reach every output pixel;
    the convolutional ("local") field stays the plain ResNet's."""
    model = create_model(name, base_channels=16, num_classes=None)
    fields = receptive_field(model, (96, 96), modules=["layer1"])
    assert fields["layer1"] == (math.inf, math.inf)
    spans = _gradient_span(_positive_double(model), 96, ["layer1"])
    assert spans["layer1"] == (96, 96)
    assert summarize(model, (96, 96)).stages[1].local_receptive_field == (35, 35)


# ---- behaviour and errors ------------------------------------------------------------------------
def test_summarize_leaves_the_model_unchanged():
    model = create_model("resnet18", base_channels=8).train()
    model.layer1.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    summarize(model, (64, 64))
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_trainable_params_and_frozen_stages():
    model = create_meta_model("resnet50", frozen_stages=1)
    frozen = sum(p.numel() for n, p in torchvision.models.resnet50().named_parameters()
                 if n.split(".")[0] in ("conv1", "bn1", "layer1"))
    assert count_params(model, trainable_only=True) == 25_557_032 - frozen
    assert "trainable" in format_table(summarize(model))


def test_a_model_without_meta_kernels_is_summarized_on_the_cpu(monkeypatch):
    from resbone.models import registry

    class NoMetaKernel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            if x.device.type == "meta":
                raise NotImplementedError("no meta kernel for this op")
            return self.conv(x)

    monkeypatch.setitem(registry._MODELS, "no_meta_kernel", NoMetaKernel)
    assert summarize("no_meta_kernel", (16, 16)).macs == 4 * 27 * 14 * 14


def test_model_table_markdown_rows():
    table = model_table_markdown(["resnet18", "resnet50"])
    assert "| resnet18 | 11.69 M | 1.814 |" in table and "| resnet50 | 25.56 M | 4.089 |" in table


@pytest.mark.parametrize("call, error, words", [
    (lambda: create_meta_model("resnet5"), KeyError, ["'resnet5'", "resnet50"]),
    (lambda: create_meta_model("resnet50", depht=50), TypeError, ["'depht'", "depth"]),
    (lambda: summarize("resnet18", (0, 224)), ValueError, ["(0, 224)", "positive"]),
    (lambda: summarize("resnet18", (224,)), ValueError, ["(224,)"]),
    (lambda: summarize(42), TypeError, ["int"]),
    (lambda: count_macs(nn.Sequential(nn.Conv2d(3, 3, 5)), (2, 2)), ValueError, ["(1, 3, 2, 2)"]),
    (lambda: receptive_field(nn.Sequential(nn.Conv2d(3, 3, 3)), modules=["1"]), KeyError, ["'1'"]),
])
def test_errors_name_the_bad_value(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert all(w in message for w in words), message
