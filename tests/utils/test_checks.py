"""resbone.utils.checks: the int check refuses bools and floats, check_choice names what is allowed, and the
close-name hint is difflib's (Python's own similarity ratio), best match first."""
from __future__ import annotations

import difflib

import pytest

from resbone.utils.checks import check_choice, check_int, close_matches, did_you_mean, is_int


@pytest.mark.parametrize("value, expected", [(3, True), (0, True), (-2, True), (True, False), (False, False),
                                             (3.0, False), ("3", False), (None, False)])
def test_is_int_refuses_bools_and_floats(value, expected):
    assert is_int(value) is expected


@pytest.mark.parametrize("value, low, high, message", [
    (0, 1, None, "depth must be a positive int, got 0"), (True, 1, None, "depth must be a positive int, got True"),
    (-1, 0, None, "depth must be an int >= 0, got -1"), (9, 1, 8, "depth must be an int in 1..8, got 9")])
def test_check_int_names_the_value_and_what_is_allowed(value, low, high, message):
    with pytest.raises(ValueError) as error:
        check_int("depth", value, low, high)
    assert str(error.value) == message
    assert check_int("depth", 8, 1, 8) == 8


def test_check_choice():
    assert check_choice("style", "caffe", ["pytorch", "caffe"]) == "caffe"
    with pytest.raises(ValueError, match=r"style must be one of \('pytorch', 'caffe'\), got 'tf'"):
        check_choice("style", "tf", ["pytorch", "caffe"])


def test_close_names_are_difflibs():
    names = ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "mobilenet_v2"]
    assert close_matches("resnet05", names) == difflib.get_close_matches("resnet05", names, n=3, cutoff=0.6)
    assert close_matches("resnet05", names, n=1) == ["resnet50"]
    assert did_you_mean("mobilenetv2", names) == "did you mean mobilenet_v2?"
    assert did_you_mean("vit_base", names) == ""
