"""`import resbone` changes nothing in the caller's process and loads nothing heavy (issue 22 item 3); the
`resbone` command sets OMP_WAIT_POLICY before torch loads (libgomp reads it then); the lazy package still
answers every public name, dir() and `from resbone import ...`, and the public API is typed (py.typed).

Each import check runs in a fresh interpreter (this one has long since imported everything).
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys

import pytest

import resbone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, base.get("PYTHONPATH")]))  # this checkout's resbone
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_changes_nothing_and_loads_no_torch():
    # the issue's own command, and torch too: the package is a table of names until one is used
    code = "import resbone, os, sys; print(" \
           "os.environ.get('OMP_WAIT_POLICY'), 'yacs' in sys.modules, 'torch' in sys.modules)"
    assert _python(code) == "None False False"


def test_create_model_loads_no_detection_stack():
    code = ("import sys, resbone; model = resbone.create_model('resnet18'); print(type(model).__name__, "
            "[m for m in ('yacs', 'pycocotools', 'resbone.detection') if m in sys.modules])")
    assert _python(code) == "ResNet []"


# libgomp reads OMP_WAIT_POLICY when torch loads it: an audit hook prints the value at torch's import and ends
# the process there (nothing after that moment matters, and torch need not load)
_AT_TORCH_IMPORT = """
import os, runpy, sys
def hook(event, args):
    if event == "import" and args[0] == "torch":
        print("at torch's import:", os.environ.get("OMP_WAIT_POLICY"), flush=True)
        os._exit(0)
sys.addaudithook(hook)
sys.argv = ["resbone", "list", "resnet18"]
{how}
"""


@pytest.mark.parametrize("how", ["from resbone.cli import main; main()",  # the console script's entry point
                                 "runpy.run_module('resbone', run_name='__main__')"])  # python -m resbone
def test_the_command_sets_the_thread_policy_before_torch(how):
    code = _AT_TORCH_IMPORT.replace("{how}", how)
    assert _python(code) == "at torch's import: PASSIVE"
    assert _python(code, OMP_WAIT_POLICY="ACTIVE") == "at torch's import: ACTIVE"  # the user's value stays


def test_public_names_resolve_to_their_modules():
    assert resbone.__all__ == sorted(resbone._EXPORTS)
    for name, module in resbone._EXPORTS.items():
        assert getattr(resbone, name) is getattr(importlib.import_module(module), name), name
    package = os.path.join(REPO, "resbone")
    submodules = {n.removesuffix(".py") for n in os.listdir(package) if not n.startswith("_")
                  and (n.endswith(".py") or os.path.isfile(os.path.join(package, n, "__init__.py")))}
    assert "detection" in submodules and set(resbone.__all__) | submodules <= set(dir(resbone))
    from resbone import create_model, detection  # from-imports of a name and of a subpackage

    assert create_model is importlib.import_module("resbone.factory").create_model
    assert detection is sys.modules["resbone.detection"]
    with pytest.raises(AttributeError, match="has no attribute 'create_modle'"):
        resbone.create_modle


def test_lazy_names_in_a_fresh_interpreter():
    code = ("import json, sys, resbone; names = dir(resbone); from resbone import list_configs; "
            "print(json.dumps([sorted(set(resbone.__all__) - set(names)), list_configs('fcos/*'), "
            "'torch' in sys.modules]))")
    missing, configs, torch_loaded = json.loads(_python(code))
    assert missing == [] and "fcos/shapes_R_18_FPN" in configs and not torch_loaded


@pytest.mark.parametrize("name", resbone.__all__)
def test_public_api_is_typed(name):
    # resbone ships py.typed: every public callable says its parameter and return types
    obj = getattr(resbone, name)
    function = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(function)
    untyped = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    assert untyped == [], f"{name}: parameters without a type: {untyped}"
    assert inspect.isclass(obj) or signature.return_annotation is not inspect.Signature.empty
    assert os.path.isfile(os.path.join(REPO, "resbone", "py.typed"))


def test_version_flag(capsys):
    from resbone.cli import main

    for argv in (["--version"], ["-h"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"resbone {resbone.__version__}\n") and "configs" in out
