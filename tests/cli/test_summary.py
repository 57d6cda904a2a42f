"""`resbone summary` and `resbone list`: the printed totals are torchvision's published figures, --set and
--input-size reach the model, and every user error exits with code 2 and a message naming the value."""
from __future__ import annotations

import pytest

from resbone.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_resnet50_prints_published_totals(capsys):
    code, out, _ = _run(capsys, "summary", "resnet50")
    assert code == 0
    assert "25,557,032" in out and "4.089 G" in out  # torchvision: 25,557,032 params, 4.089 GMACs at 224
    layer4 = next(line for line in out.splitlines() if line.startswith("layer4"))
    assert layer4.split()[1:5] == ["2048x7x7", "32", "2048", "3"] and layer4.split()[-1] == "427"


def test_summary_input_size_and_set_reach_the_model(capsys):
    code, out, _ = _run(capsys, "summary", "resnet18", "--input-size", "128", "96", "--set", "last_stride=1",
                        "--set", "num_classes=None")
    assert code == 0
    assert "input 1x3x128x96" in out
    layer4 = next(line for line in out.splitlines() if line.startswith("layer4"))
    assert layer4.split()[1:3] == ["512x8x6", "16"]  # last_stride=1: output stride 16
    assert "head" not in out and "11,176,512" in out  # backbone: resnet18 minus fc (513,000)


def test_summary_mobilenet_v2_totals(capsys):
    code, out, _ = _run(capsys, "summary", "mobilenet_v2")
    assert code == 0 and "3,504,872" in out and "0.301 G" in out


def test_list_with_pattern_and_markdown(capsys):
    code, out, _ = _run(capsys, "list", "resnet5*")
    assert code == 0 and out.split() == sorted(out.split())
    assert {"resnet50", "resnet50c", "resnet50d"} <= set(out.split())
    assert all(name.startswith("resnet5") for name in out.split())
    code, out, _ = _run(capsys, "list", "resnet18", "--markdown")
    assert code == 0 and "| resnet18 | 11.69 M | 1.814 |" in out


@pytest.mark.parametrize("argv, words", [
    (["summary", "resnet5"], ["'resnet5'", "resnet50"]),
    (["summary", "resnet50", "--set", "depht=50"], ["'depht'", "depth"]),
    (["summary", "resnet50", "--set", "depth"], ["'depth'", "KEY=VALUE"]),
    (["summary", "resnet50", "--set", "depth=[1"], ["'[1'", "YAML"]),
    (["summary", "resnet50", "--set", "depth=101"], ["'depth'", "resbone list"]),
    (["summary", "resnet50", "--set", "style=diagonal"], ["'diagonal'", "pytorch"]),
    (["summary", "resnet50", "--input-size", "0", "224"], ["(0, 224)"]),
    (["list", "nothing*"], ["'nothing*'"]),
])
def test_user_errors_exit_2_with_a_message_naming_the_value(capsys, argv, words):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert all(w in err for w in words), err
