"""The package's shape, checked by walking resbone/ with `ast` (STYLE.md guidelines 1 and 7).

- Imports flow one way (DESIGN.md: layers -> models -> builders/convert/analysis/deploy -> engine ->
  detection / classification / reid -> tasks -> cli): a module imports only from its own package or from
  packages of a lower rank, at module level or inside a function alike. `resbone/__init__.py` (the public
  facade) is exempt.
- No import cycle between resbone's modules, inside a package either.
- Files stay under 400 lines and functions under 60.
- Every test file or document a docstring or comment cites exists in the repository.
- One fact, one place (issue 22): the facts and checks that used to be written several times each have one
  home, and their old spellings appear nowhere else.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "resbone"

# The first name under resbone/ -> its rank; a module may import only strictly lower ranks (or its own package).
# The engine serves every task and knows none of them (issue 19); the tasks sit above it, the CLI (which picks a
# task from the config) above all. weights (2.5): the published files of the models (it names models) that
# convert's loader fetches by address.
RANKS = {"utils": 0, "layers": 1, "models": 2, "weights": 2.5, "convert": 3, "builders": 4, "factory": 4,
         "analysis": 4, "deploy": 4, "engine": 5, "detection": 6, "classification": 6, "reid": 6, "tasks": 7,
         "cli": 8, "__main__": 9}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# Exceptions that remain, each with its reason; an entry that is no longer needed fails the test too.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_LONG: set[str] = set()
KNOWN_DEAD_REFERENCES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The resbone module an import of `name` loads (its longest existing prefix)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from resbone.convert import load` may name a submodule
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name == "resbone" or name.startswith("resbone."):
                target = _resolve(name, modules)
                if target and target != "resbone":
                    found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = _imports(path, modules)
        # `from resbone.convert import load` adds both resbone.convert.load and resbone.convert; the package
        # __init__ itself is only a real edge when no submodule was meant
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets) or t == name}
    return graph


def _component(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_imports_flow_from_higher_packages_to_lower_ones_only():
    upward = set()
    for module, targets in _graph().items():
        if module == "resbone":
            continue
        source = _component(module)
        assert source in RANKS, f"{module}: add resbone/{source} to RANKS in {__file__}"
        for target in targets:
            if _component(target) != source and RANKS[_component(target)] >= RANKS[source]:
                upward.add((module, target))
    assert upward - KNOWN_UPWARD == set(), "imports that go up (or sideways) the layers"
    assert KNOWN_UPWARD - upward == set(), "KNOWN_UPWARD entries that are gone: remove them"


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), set(), [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = {m: t - {"resbone"} for m, t in _graph().items() if m != "resbone"}
    cycles = _cycles(graph)
    assert cycles - KNOWN_CYCLES == set(), "modules that import each other"
    assert KNOWN_CYCLES - cycles == set(), "KNOWN_CYCLES entries that are gone: remove them"


def _long_things() -> set[str]:
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        relative = str(path.relative_to(ROOT.parent))
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.add(relative)

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if child.end_lineno - child.lineno + 1 > MAX_FUNCTION_LINES:
                        found.add(f"{relative}::{prefix}{child.name}")
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")

        walk(ast.parse(text), "")
    return found


def test_files_and_functions_stay_short():
    long = _long_things()
    assert long - KNOWN_LONG == set(), f"over {MAX_FILE_LINES} lines per file / {MAX_FUNCTION_LINES} per function"
    assert KNOWN_LONG - long == set(), "KNOWN_LONG entries that are gone: remove them"


@pytest.mark.parametrize("source, expected", [
    ("import resbone.convert.load\n", {"resbone.convert.load"}),
    ("def f():\n    from resbone.convert import load_checkpoint\n", {"resbone.convert"}),
    ("from resbone.models import resnet\n", {"resbone.models.resnet"}),
])
def test_the_import_walker_sees_module_and_function_level_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    targets = _imports(path, _modules())
    assert expected <= targets


def _dead_references() -> set[str]:
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        relative = str(path.relative_to(ROOT.parent))
        for cited in set(re.findall(r"\bresbone(?:\.\w+)+", path.read_text())):
            if not _resolves(cited):
                found.add(f"{relative}: {cited}")
        for cited in set(re.findall(r"\b(?:tests|bench|configs|examples|docs)/[\w/-]+\.(?:py|yaml|sh|md)"
                                    r"|(?<![\w/-])[\w-]+\.md\b", path.read_text())):
            if not (ROOT.parent / cited).exists():
                found.add(f"{relative}: {cited}")
    return found


def _resolves(dotted: str) -> bool:
    """`resbone.a.b.name` names an existing module, or an attribute of one."""
    import importlib

    module = _resolve(dotted, _modules())
    if module is None:
        return False
    obj = importlib.import_module(module)
    for attribute in dotted[len(module) + 1:].split(".") if dotted != module else ():
        if not hasattr(obj, attribute):
            return False
        obj = getattr(obj, attribute)
    return True


def test_cited_files_exist():
    dead = _dead_references()
    assert dead - KNOWN_DEAD_REFERENCES == set(), "docstrings or comments cite files the repository does not have"
    assert KNOWN_DEAD_REFERENCES - dead == set(), "KNOWN_DEAD_REFERENCES entries that are gone: remove them"


# (what, a pattern of its old spellings, the one file allowed to hold it) - issue 22's duplicates
ONE_PLACE = [
    ("the BasicBlock depths", r"\(18, 34\)", "resbone/models/resnet.py"),
    ("the int-but-not-bool check", r"isinstance\([^()]+, bool\) or not isinstance\([^()]+, int\)"
                                   r"|isinstance\([^()]+, int\) and not isinstance\([^()]+, bool\)"
                                   r"|not isinstance\([^()]+, int\) or isinstance\([^()]+, bool\)",
     "resbone/utils/checks.py"),
    ("close-name suggestions", r"get_close_matches", "resbone/utils/checks.py"),
    ("ImageNet's mean and std", r"0\.485, 0\.456, 0\.406|0\.229, 0\.224, 0\.225", "resbone/models/base.py"),
    ("ResNeXt 32x4d", r"groups=32, (base_width|width_per_group)=4|\"groups\": 32", "resbone/models/variants.py"),
    ("MobileNetV2's block counts", r"1, 2, 3, 4, 3, 3, 1", "resbone/models/mobilenetv2.py"),
    ("the IoU-loss check", r"IOU_LOSS_TYPE must be", "resbone/detection/fcos.py"),
    # timm's pool + classifier on a backbone; the detector's network is forward_network
    ("forward_head", r"\bforward_head\b", "resbone/models/base.py"),
    ("create_model's definition", r"def create_model\b", "resbone/factory.py"),
    ("the network patching of compile / channels_last", r"setattr\(model, method", "resbone/deploy/inference.py"),
]


@pytest.mark.parametrize("what, pattern, home", ONE_PLACE, ids=[entry[0] for entry in ONE_PLACE])
def test_one_fact_one_place(what, pattern, home):
    holders = sorted(str(path.relative_to(ROOT.parent)) for path in ROOT.rglob("*.py")
                     if re.search(pattern, path.read_text()))
    assert holders in ([home], []), f"{what} is written in {holders}; it belongs in {home} only"
