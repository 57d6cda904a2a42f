"""TorchScript and torch.fx for every registered network, against its eager self on a 64 px input: torch.jit.script,
torch.jit.trace, and fx tracing (torchvision's create_feature_extractor, as timm's tests do) then scripting give
eager's outputs; a scripted network saves and loads (what LibTorch / mobile deployment reads); backbones and
features_only networks script to lists of eager's maps; the plugins TorchScript cannot compile stop it with one
error naming them, and trace instead."""
from __future__ import annotations

import gc
import io

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import resbone
from resbone import ResNet, create_model
from tests.conftest import DROPPED_OPS
from tests.helpers import randomize_norms

TOL = dict(atol=1e-4, rtol=1e-4)
# Every registered network with one block per stage: the same module types and code paths, built and compiled
# in a fraction of the time (depth only repeats blocks); the full depths script in tests/timm_suite (timm's
# test_model_forward_torchscript / _fx_torchscript) and at full depth here for resnet50 and mobilenet_v2.
SHALLOW = dict(stage_blocks=(1, 1, 1, 1))
CASES = [pytest.param(n, {} if n.startswith("mobilenet") else SHALLOW, id=n) for n in resbone.list_models()] + \
    [pytest.param("resnet50", {}, id="resnet50-full-depth")]

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _fx_then_script(model):
    """timm's tests/test_models.py `_create_fx_model`: the graph's last node, traced by torchvision, scripted."""
    _, eval_nodes = get_graph_node_names(model)
    return torch.jit.script(create_feature_extractor(model, return_nodes=[eval_nodes[-1]]))


@pytest.mark.parametrize("name, kwargs", CASES)
def test_script_trace_and_fx_equal_eager(name, kwargs, x):
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, num_classes=10, **kwargs)).eval()
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected, **TOL)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected, **TOL)
        torch.testing.assert_close(next(iter(_fx_then_script(model)(x).values())), expected, **TOL)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.jit.load(buffer)(x), expected, **TOL)


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", dict(num_classes=None, out_indices=(1, 3))), ("mobilenet_v2", dict(num_classes=None)),
    ("resnet34d", dict(features_only=True, out_indices=(0, 2))), ("mobilenet_v2", dict(features_only=True)),
    ("resnet18", dict(num_classes=0, global_pool="catavgmax")), ("resnet18", dict(num_classes=0, global_pool="")),
])
def test_backbones_and_feature_extractors_script_to_eagers_maps(name, kwargs, x):
    model = randomize_norms(create_model(name, **kwargs)).eval()
    with torch.no_grad():
        expected, got = model(x), torch.jit.script(model)(x)
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(got, expected, **TOL)
        return
    assert isinstance(got, list) and len(got) == len(expected) == len(model.feature_info)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL)


def test_dcn_and_context_block_script():
    model = ResNet(50, num_classes=10, stage_blocks=(1, 1, 1, 1), stage_with_dcn=(False, True, True, True),
                   dcn=dict(type="DCNv2", deform_groups=1, fallback_on_stride=False),
                   plugins=[dict(cfg=dict(type="ContextBlock", ratio=1 / 16), position="after_conv3")]).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x), **TOL)


@pytest.mark.parametrize("plugin", [dict(type="NonLocal2d"), dict(type="GeneralizedAttention", attention_type="0010",
                                                                   num_heads=8)])
def test_an_unscriptable_plugin_is_named_and_the_model_traces(plugin, x):
    model = ResNet(50, num_classes=10, stage_blocks=(1, 1, 1, 1),
                   plugins=[dict(cfg=plugin, position="after_conv2", stages=(False, False, True, True))]).eval()
    with pytest.raises(TypeError, match=f"{plugin['type']}.*torch.jit.trace"):
        torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.trace(model, x)(x), model(x), **TOL)


def test_the_ops_torch_library_drops_stay_alive_while_torchscript_names_them_by_id():
    """The guard in tests/conftest.py against a torch bug: TorchScript's builtin table keeps the id of an op that
    torch.library replaced (a second overload defined) or deleted (its Library destroyed); the op must stay
    alive, or a later object allocated at its address is taken for a builtin and scripting fails at random."""
    namespace = f"resbone_probe_{len(DROPPED_OPS)}"
    library = torch.library.Library(namespace, "DEF")
    library.define("probe(Tensor x) -> Tensor")
    replaced = id(getattr(torch.ops, namespace).probe._op)
    library.define("probe.twice(Tensor x) -> Tensor")
    deleted = id(getattr(torch.ops, namespace).probe._op)
    assert deleted != replaced
    del library
    gc.collect()
    assert "probe" not in vars(getattr(torch.ops, namespace))  # the Library's finalizer ran
    table = torch.jit._builtins._get_builtin_table()
    for op_id in (replaced, deleted):
        assert table[op_id] == f"{namespace}::probe"
        kept = [op for op in DROPPED_OPS if id(op) == op_id]
        assert kept and kept[0].__name__ == "probe"
