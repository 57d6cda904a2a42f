"""mmdetection's own ResNet (mmdet 3.3 with mmcv's plugins) with random weights: its checkpoints of GCNet,
generalized-attention, non-local and GroupNorm backbones load strict into resbone's ResNet built with the same
`plugins=` / `norm_cfg=` and give the same feature maps; resbone's weights converted back to mmdet's names load
strict into mmdet's ResNet. Plugins are named by type there and by position here: the loader maps them with
the model's own plugin list, `resbone convert` with --arch/--set. mmpretrain's own ResNetV1d and SEResNet (a
ConvModule deep stem, no AvgPool in a stride-1 avg_down shortcut, `se_layer.convK.conv`) the same way."""
from __future__ import annotations

import pytest
import torch
import yaml

from resbone import create_model
from resbone.cli import main
from resbone.convert import convert_state_dict, detect_dialect, load_checkpoint, save_state_dict_file
from resbone.convert.common import ModelRequired
from resbone.models.resnet import ResNet
from tests.helpers.references import TOL, mmdet_resnet, mmpretrain_backbones, randomize, relative_error

GCNET = [dict(cfg=dict(type="ContextBlock", ratio=1 / 16), stages=(False, True, True, True), position="after_conv3")]
ATTENTION = [dict(cfg=dict(type="GeneralizedAttention", spatial_range=-1, num_heads=8, attention_type="0010",
                           kv_stride=2), stages=(False, False, True, True), position="after_conv2")]
NONLOCAL_AND_GC = [dict(cfg=dict(type="NonLocal2d"), stages=(False, False, True, False), position="after_conv2"),
                   dict(cfg=dict(type="ContextBlock", ratio=1 / 4), stages=(False, False, True, True),
                        position="after_conv3")]
GN = dict(type="GN", num_groups=32, requires_grad=True)
CASES = {"gcnet": dict(plugins=GCNET), "gen_attention": dict(plugins=ATTENTION),
         "nonlocal_and_gcnet": dict(plugins=NONLOCAL_AND_GC), "gn": dict(norm_cfg=GN)}



def _pair(case: str):
    torch.manual_seed(0)
    reference = mmdet_resnet()(depth=50, **CASES[case])
    randomize(reference)
    ours = ResNet(50, num_classes=None, **{k: v for k, v in CASES[case].items() if k != "norm_cfg"},
                  norm_cfg=dict(type="GN", num_groups=32) if case == "gn" else None).eval()
    return reference, ours


@pytest.mark.parametrize("case", list(CASES))
def test_mmdet_checkpoint_loads_strict_and_gives_the_same_maps_and_converts_back(case):
    reference, ours = _pair(case)
    theirs = reference.state_dict()
    report = load_checkpoint(ours, theirs)  # dialect detected with the model's plugin list, strict
    assert report.ok and report.dialect == "mmdet" and len(report.loaded) == len(theirs)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for mine, expected in zip(ours(x), reference(x)):
            assert relative_error(mine, expected) < TOL
    back = convert_state_dict(ours.state_dict(), "resbone", "mmdet", model=ours)
    assert back.keys() == theirs.keys()
    reference.load_state_dict(back, strict=True)
    if case != "gn":  # without the model, a plugin's type is read from its parameter names
        assert convert_state_dict(ours.state_dict(), "resbone", "mmdet").keys() == theirs.keys()


def test_plugin_names_follow_mmdets_order_in_each_block():
    reference, ours = _pair("nonlocal_and_gcnet")
    theirs = reference.state_dict()
    assert "layer3.0.nonlocal_block.g.conv.weight" in theirs and "layer3.0.context_block.conv_mask.weight" in theirs
    native = convert_state_dict(theirs, "mmdet", "resbone", model=ours)
    assert "layer3.0.after_conv2.0.g.conv.weight" in native and "layer4.1.after_conv3.0.conv_mask.weight" in native


def test_reading_plugins_without_the_model_says_how_to_give_it():
    reference, _ = _pair("gcnet")
    theirs = reference.state_dict()
    assert detect_dialect(theirs) == "mmdet"
    with pytest.raises(ModelRequired, match="--arch NAME --set plugins"):
        convert_state_dict(theirs, "mmdet", "timm")


def test_cli_reads_plugins_with_arch_and_set(tmp_path, capsys):
    reference, _ = _pair("gcnet")
    src = save_state_dict_file(reference.state_dict(), tmp_path / "gcnet.pth")
    out = tmp_path / "timm.pth"
    assert main(["convert", str(src), str(out), "--to", "timm"]) == 2
    assert "--arch NAME --set plugins" in capsys.readouterr().err
    plugins = "plugins=" + yaml.safe_dump([{**p, "stages": list(p["stages"])} for p in GCNET], default_flow_style=True)
    assert main(["convert", str(src), str(out), "--to", "timm", "--arch", "resnet50", "--set", "num_classes=None",
                 "--set", plugins.strip()]) == 0
    assert "(mmdet, " in capsys.readouterr().out


def test_gn_model_is_written_with_mmdets_gn_names():
    reference, ours = _pair("gn")
    load_checkpoint(ours, reference.state_dict())
    written = convert_state_dict(ours.state_dict(), "resbone", "mmdet")
    assert {"gn1.weight", "layer1.0.gn2.weight", "layer4.2.gn3.bias", "layer1.0.downsample.1.weight"} <= set(written)
    assert not any(".bn" in k or k.startswith("bn") for k in written)


@pytest.mark.parametrize("cls,ours_name", [("ResNetV1d", "resnet50d"), ("SEResNet", "seresnet50")])
def test_mmpretrain_backbone_loads_strict_gives_the_same_map_and_converts_back(cls, ours_name):
    torch.manual_seed(0)
    reference = getattr(mmpretrain_backbones(), cls)(depth=50)  # out_indices=(3,), mmpretrain's default
    randomize(reference)
    theirs = {"backbone." + k: v for k, v in reference.state_dict().items()}  # as mmpretrain's classifiers save it
    ours = create_model(ours_name, num_classes=None, out_indices=(3,)).eval()
    report = load_checkpoint(ours, theirs)
    assert report.ok and report.dialect == "mmpretrain" and len(report.loaded) == len(theirs)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(ours(x)[0], reference(x)[0]) < TOL
    back = convert_state_dict(ours.state_dict(), "resbone", "mmpretrain")
    reference.load_state_dict({k[len("backbone."):]: v for k, v in back.items()}, strict=True)
