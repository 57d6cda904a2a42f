"""Shipped configs found by name from any directory (detectron2's model_zoo.get_config_file), a path used as
it is, a name that matches nothing answered with the close ones; `resbone configs` lists them and the
train / eval / predict / export commands take a name. The reference is the checkout's resbone/configs folder,
read with glob."""
from __future__ import annotations

import glob
import os

import pytest

from resbone.cli import main
from resbone.utils.configs import config_dir, find_config, list_configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "resbone", "configs")


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a directory that is not the checkout
    return tmp_path


def test_list_configs_is_the_package_folder():
    on_disk = sorted(os.path.relpath(p, SHIPPED)[:-len(".yaml")] for p in glob.glob(f"{SHIPPED}/**/*.yaml",
                                                                                    recursive=True))
    assert list_configs() == on_disk and "fcos/shapes_R_18_FPN" in on_disk
    assert os.path.samefile(config_dir(), SHIPPED)
    assert list_configs("fcos/shapes*") == ["fcos/shapes_R_18_FPN"] and list_configs("nothing*") == []
    with pytest.raises(TypeError, match="pattern must be a string"):
        list_configs(3)


@pytest.mark.parametrize("name", ["fcos/shapes_R_18_FPN", "fcos/shapes_R_18_FPN.yaml"])
def test_a_name_finds_the_shipped_file(name):
    assert os.path.samefile(find_config(name), os.path.join(SHIPPED, "fcos", "shapes_R_18_FPN.yaml"))


def test_a_path_is_used_as_it_is(elsewhere):
    (elsewhere / "fcos").mkdir()
    (elsewhere / "fcos" / "shapes_R_18_FPN.yaml").write_text("SOLVER:\n  MAX_ITER: 3\n")
    # a file of the same name as a shipped config wins: the user's path means what it meant before
    assert find_config("fcos/shapes_R_18_FPN.yaml") == "fcos/shapes_R_18_FPN.yaml"
    assert find_config(elsewhere / "fcos" / "shapes_R_18_FPN.yaml") == str(elsewhere / "fcos" / "shapes_R_18_FPN.yaml")
    assert os.path.samefile(find_config("fcos/shapes_R_18_FPN"), os.path.join(SHIPPED, "fcos", "shapes_R_18_FPN.yaml"))


@pytest.mark.parametrize("given, suggested", [
    ("configs/fcos/shapes_R_18_FPN.yaml", "did you mean fcos/shapes_R_18_FPN?"),  # the README's old path
    ("shapes_R_18_FPN", "did you mean fcos/shapes_R_18_FPN?"),  # the file name alone
    ("fcos/shapes_R18_FPN", "did you mean fcos/shapes_R_18_FPN"),  # a typo
])
def test_an_unknown_name_lists_the_close_ones(given, suggested):
    with pytest.raises(ValueError, match=r"neither a config file nor a shipped config name") as error:
        find_config(given)
    assert suggested in str(error.value) and "`resbone configs` lists them" in str(error.value)


def test_nothing_close_lists_all_and_paths_stay_paths(tmp_path):
    with pytest.raises(ValueError, match="the shipped configs are .*fcos/"):
        find_config("zzzz")
    # an absolute or parent path that does not exist is not looked up inside the package
    with pytest.raises(ValueError, match="neither a config file"):
        find_config(str(tmp_path / "fcos" / "shapes_R_18_FPN"))
    with pytest.raises(ValueError, match="neither a config file"):
        find_config("../configs/fcos/shapes_R_18_FPN")
    with pytest.raises(TypeError, match="a file path or a shipped config's name"):
        find_config(None)


def test_configs_command(capsys):
    assert main(["configs"]) == 0
    assert capsys.readouterr().out.split() == list_configs()
    assert main(["configs", "fcos/shapes*", "--path"]) == 0
    (path,) = capsys.readouterr().out.split()
    assert os.path.samefile(path, os.path.join(SHIPPED, "fcos", "shapes_R_18_FPN.yaml"))
    assert main(["configs", "nothing*"]) == 2
    assert "no shipped config matches 'nothing*'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["train"], ["eval", "--weights", "w.pth"], ["predict", "--weights", "w.pth",
                                                                                 "--out", "o", "--opts"]])
def test_commands_take_a_name(command, capsys):
    # the config loads (from outside the checkout) and its keys are checked: an unknown one is named
    argv = [command[0], "fcos/shapes_R_18_FPN", *command[1:], "SOLVER.MAX_ITERS", "3"]
    assert main(argv) == 2
    assert "unknown config key SOLVER.MAX_ITERS" in capsys.readouterr().err
    argv[1] = "fcos/shapes"
    assert main(argv) == 2
    assert "'fcos/shapes' is neither a config file nor a shipped config name" in capsys.readouterr().err


def test_export_takes_a_name(tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "detector.onnx"
    assert main(["export", "fcos/shapes_R_18_FPN", str(out), "--set", "MODEL.FCOS.NUM_CONVS=1",
                 "--set", "MODEL.DEVICE=cpu", "--input-size", "64", "64"]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out
