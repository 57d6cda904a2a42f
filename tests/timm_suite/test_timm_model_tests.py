"""timm's own model tests, unchanged, on every resbone model: timm's `tests/test_models.py` from the sdist of the
installed timm (fetched by `make install` into .venv/timm-sdist; RESBONE_TIMM_TESTS may name another tests/
folder), its test functions called with each resbone model registered into timm's registry as
'resbone_<name>' for this module only (the registration is undone afterwards).

Run: OMP_NUM_THREADS=1 python -m pytest tests/timm_suite (docs/timm.md gives its time).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import _registry
from timm.models._pretrained import PretrainedCfg

import resbone

TIMM_TESTS = Path(os.environ.get("RESBONE_TIMM_TESTS") or
                  Path(sys.prefix) / "timm-sdist" / f"timm-{timm.__version__}" / "tests")
PREFIX = "resbone_"
# every test function of timm's that runs on each of its own models; the module's own parametrization is
# over timm's models, so the functions are called here with resbone's names
TIMM_TEST_FUNCTIONS = (
    "test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_forward_torchscript",
    "test_model_forward_features", "test_model_forward_intermediates_features", "test_model_forward_intermediates",
    "test_prune_intermediate_layers_contract", "test_model_forward_fx", "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
)
# the deepest and widest networks take seconds per test on one core
BIG = ("resnet101*", "resnet152*", "resnext101*", "wide_resnet*", "se_resnet101*", "se_resnet152",
       "se_resnext101*", "seresnet101")
MODELS = [pytest.param(name, marks=pytest.mark.slow) if any(Path(name).match(p) for p in BIG) else name
          for name in resbone.list_models()]


@pytest.fixture(scope="module")
def timm_tests():
    path = TIMM_TESTS / "test_models.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `make install` fetches timm's sdist (pip download --no-binary "
                                f":all: timm=={timm.__version__}) into .venv/timm-sdist; or set RESBONE_TIMM_TESTS")
    spec = importlib.util.spec_from_file_location("timm_sdist_test_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entrypoint(name: str):
    def create(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None, **kwargs):
        if pretrained:
            raise ValueError(f"{PREFIX}{name} has no weights in timm's registry")
        return resbone.create_model(name, **kwargs)

    create.__name__ = PREFIX + name
    return create


@pytest.fixture(scope="module")
def registered(timm_tests):
    """resbone's models in timm's registry, with their pretrained_cfg (read on the meta device), for this module."""
    with pytest.MonkeyPatch.context() as patch:
        for name in resbone.list_models():
            with torch.device("meta"):
                cfg = resbone.create_model(name).pretrained_cfg
            timm_name = PREFIX + name
            patch.setitem(_registry._model_entrypoints, timm_name, _entrypoint(name))
            patch.setitem(_registry._model_to_module, timm_name, "resbone")
            patch.setitem(_registry._model_pretrained_cfgs, timm_name, PretrainedCfg(architecture=timm_name, **cfg))
        assert PREFIX + "resnet18" in timm.list_models(PREFIX + "*")
        yield
    leftover = [n for n in timm.list_models() if n.startswith(PREFIX)]
    assert not leftover, f"timm's registry kept {leftover[:3]}"


def _arguments(function, model_name: str, timm_tests) -> dict:
    """The arguments timm's parametrization and fixtures would give (its batch size; cfg_device as its fixture)."""
    values = {"model_name": model_name}
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0] == "batch_size":
            values["batch_size"] = mark.args[1][0]
    if "cfg_device" in inspect.signature(function).parameters:
        values["cfg_device"] = "meta" if timm_tests._HAS_DEVICE_CONTEXT else timm_tests.torch_device
    return values


@pytest.mark.parametrize("test_name", TIMM_TEST_FUNCTIONS)
@pytest.mark.parametrize("name", MODELS)
def test_timm_model_test_passes(timm_tests, registered, name, test_name):
    function = getattr(timm_tests, test_name)
    torch.manual_seed(0)
    function(**_arguments(function, PREFIX + name, timm_tests))

