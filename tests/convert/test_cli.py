"""`resbone convert IN OUT --to DIALECT [--from DIALECT] [--arch NAME]`: a thin layer over
resbone.convert that writes the converted file atomically and never over IN."""
from __future__ import annotations

import pytest
import torch

from resbone.cli import main
from resbone.convert import convert_state_dict, load_state_dict_file, save_state_dict_file
from tests.helpers.checkpoints import assert_identical, random_state_dict


def _native18() -> dict:
    from resbone import create_model

    sd = create_model("resnet18", stage_blocks=(1, 1, 1, 1)).state_dict()
    g = torch.Generator().manual_seed(0)
    # running variances stay positive: Caffe2's folding takes their square root (negative ones would give NaN,
    # which convert refuses)
    return {k: (torch.randn(v.shape, generator=g).abs() + 0.5 if k.endswith("running_var") else
                torch.randn(v.shape, generator=g)) if v.is_floating_point() else v for k, v in sd.items()}


def test_convert_chain_through_files_is_bit_exact(tmp_path, capsys):
    """torchvision .pth -> detectron2 .pkl -> mmpretrain .safetensors -> torchvision .pth, detected
    automatically at each step; --arch refuses weights that do not fit the named model (and writes nothing)."""
    native = _native18()
    src = save_state_dict_file(native, tmp_path / "tv.pth")
    assert main(["convert", str(src), str(tmp_path / "d2.pkl"), "--to", "detectron2"]) == 0
    assert "(torchvision, " in capsys.readouterr().out
    assert "res2.0.conv1.norm.weight" in load_state_dict_file(tmp_path / "d2.pkl")
    assert main(["convert", str(tmp_path / "d2.pkl"), str(tmp_path / "mm.safetensors"), "--to", "mmpretrain",
                 "--from", "d2", "--arch", "resnet18"]) == 2  # stage_blocks differ: the strict check refuses
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "mm.safetensors").exists()
    assert main(["convert", str(tmp_path / "d2.pkl"), str(tmp_path / "mm.safetensors"), "--to", "mmpretrain"]) == 0
    assert main(["convert", str(tmp_path / "mm.safetensors"), str(tmp_path / "back.pth"), "--to", "torchvision"]) == 0
    assert_identical(load_state_dict_file(tmp_path / "back.pth"), native)


def test_arch_check_accepts_a_complete_checkpoint(tmp_path, capsys):
    """timm names -> Caffe2 blobs (BN folded), after a strict load into the registered resnet18."""
    from resbone import create_model

    native = create_model("resnet18").state_dict()
    src = save_state_dict_file(convert_state_dict(native, "resbone", "timm"), tmp_path / "timm.pth")
    assert main(["convert", str(src), str(tmp_path / "c2.pkl"), "--to", "caffe2", "--arch", "resnet18"]) == 0
    assert "checked against resnet18" in capsys.readouterr().out
    blobs = load_state_dict_file(tmp_path / "c2.pkl")
    assert {"conv1_w", "res_conv1_bn_s", "res5_1_branch2b_bn_b", "pred_w"} <= set(blobs)


def test_refuses_to_write_over_its_input(tmp_path, capsys):
    src = save_state_dict_file(random_state_dict("plain18"), tmp_path / "w.pth")
    before = src.read_bytes()
    assert main(["convert", str(src), str(src), "--to", "timm"]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert src.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--to", "keras"], "unknown dialect 'keras'"),
    (["--to", "timm", "--prefix", "backbone."], "--prefix applies to --to mmdet only"),
])
def test_bad_arguments_are_named(tmp_path, capsys, args, message):
    src = save_state_dict_file(random_state_dict("plain18"), tmp_path / "w.pth")
    assert main(["convert", str(src), str(tmp_path / "o.pth"), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_wrong_from_dialect_is_refused_and_writes_nothing(tmp_path, capsys):
    """--from detectron2 on a Caffe2 pickle used to pass the blob names through unrenamed and write a
    'torchvision' file full of `res2_0_branch2a_w` keys; now it is refused, naming the keys and the
    dialect they look like, and OUT is not written. The right --from still works."""
    c2 = save_state_dict_file(convert_state_dict(_native18(), "resbone", "caffe2"), tmp_path / "c2.pkl",
                              pickle_key="blobs")
    out = tmp_path / "o.pth"
    assert main(["convert", str(c2), str(out), "--from", "detectron2", "--to", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert "not in the 'detectron2' dialect" in err and "conv1_w" in err and "'caffe2'" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="not in the 'detectron2' dialect"):
        convert_state_dict(load_state_dict_file(c2), "detectron2", "torchvision")
    assert main(["convert", str(c2), str(out), "--from", "caffe2", "--to", "torchvision"]) == 0
    assert "layer1.0.conv1.weight" in load_state_dict_file(out)


def test_eps_outside_caffe2_is_refused_not_ignored(tmp_path, capsys):
    # --eps used to be dropped silently unless one side was caffe2 (--prefix already refused the same way)
    src = save_state_dict_file(random_state_dict("plain18"), tmp_path / "w.pth")
    out = tmp_path / "o.pth"
    assert main(["convert", str(src), str(out), "--to", "detectron2", "--eps", "0"]) == 2
    assert "--eps applies when reading or writing caffe2 only" in capsys.readouterr().err
    assert not out.exists()
    assert main(["convert", str(src), str(tmp_path / "o.pkl"), "--to", "caffe2", "--eps", "0"]) == 0


def test_mmdet_prefix_without_the_dot_gets_one(tmp_path):
    # `--prefix backbone` used to write 'backboneconv1.weight', a file no tool (resbone included) could read
    native = _native18()
    src = save_state_dict_file(native, tmp_path / "w.pth")
    assert main(["convert", str(src), str(tmp_path / "mm.pth"), "--to", "mmdet", "--prefix", "backbone"]) == 0
    written = load_state_dict_file(tmp_path / "mm.pth")
    assert "backbone.conv1.weight" in written and not any(k.startswith("backbonec") for k in written)
    assert convert_state_dict(native, "resbone", "mmdet", prefix="backbone").keys() == written.keys()
    assert main(["convert", str(tmp_path / "mm.pth"), str(tmp_path / "back.pth"), "--to", "torchvision"]) == 0
    assert_identical(load_state_dict_file(tmp_path / "back.pth"), native)


def test_nan_weights_are_refused_unless_allowed(tmp_path, capsys):
    native = _native18()
    native["layer3.0.bn2.running_var"][0] = float("nan")
    src = save_state_dict_file(native, tmp_path / "nan.pth")
    out = tmp_path / "out.pth"
    assert main(["convert", str(src), str(out), "--to", "timm"]) == 2
    assert "NaN or Inf values in 1 tensor(s): layer3.0.bn2.running_var" in capsys.readouterr().err
    assert not out.exists()
    assert main(["convert", str(src), str(out), "--to", "timm", "--allow-nonfinite"]) == 0
    assert torch.isnan(load_state_dict_file(out)["layer3.0.bn2.running_var"][0])


def test_arch_mismatch_advice_names_real_options(tmp_path, capsys):
    """The advice used to be 'Pass strict=False', a Python argument the CLI does not have."""
    from resbone.cli import build_parser

    src = save_state_dict_file(_native18(), tmp_path / "tv.pth")  # a resnet18 with one block per stage
    assert main(["convert", str(src), str(tmp_path / "o.pth"), "--to", "timm", "--arch", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "strict=False" not in err and "--set KEY=VALUE" in err and "leave out --arch" in err
    convert = build_parser()._subparsers._group_actions[0].choices["convert"]
    options = {o for action in convert._actions for o in action.option_strings}
    assert {"--arch", "--set"} <= options
    assert main(["convert", str(src), str(tmp_path / "o.pth"), "--to", "timm", "--arch", "resnet18",
                 "--set", "stage_blocks=[1, 1, 1, 1]"]) == 0
