"""A missing optional dependency is named with the extra that installs it (pyproject's
[project.optional-dependencies]), in the library and as the `resbone export` command's one-line error."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import tomllib

from resbone.cli import main
from resbone.utils.extras import MissingExtraError, require_extra

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_require_extra():
    assert require_extra("json", extra="deploy", purpose="x") is None
    with pytest.raises(MissingExtraError, match=r"ONNX export needs the package 'no_such_module_x', which is not "
                                                r"installed: pip install 'resbone\[deploy\]'") as error:
        require_extra("no_such_module_x", extra="deploy", purpose="ONNX export")
    assert isinstance(error.value, ModuleNotFoundError) and error.value.name == "no_such_module_x"


def test_export_names_the_deploy_extra(monkeypatch, tmp_path, capsys):
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert "onnx" in extras["deploy"]  # the extra the message names brings the module
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", "resnet18", str(tmp_path / "r18.onnx")]) == 2
    err = capsys.readouterr().err
    assert "resbone export: error: resbone export (ONNX) needs the package 'onnx'" in err
    assert "pip install 'resbone[deploy]'" in err and not (tmp_path / "r18.onnx").exists()
