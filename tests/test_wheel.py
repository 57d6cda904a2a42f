"""The installed wheel is the product (issue 23): the wheel built from this checkout, installed into a fresh
virtual environment that holds only resbone's runtime dependencies, runs every command a user runs from a
folder outside the checkout, with the shipped configs found by name.

The fresh venv is made from the base interpreter (not --system-site-packages: this venv's editable install of
resbone, its .pth finder and the test extras would leak in). Its runtime dependencies (the closure of the
wheel's Requires-Dist, read from the installed distributions' metadata) are the ones already installed here,
linked into one folder that a .pth file puts on the new venv's path, so nothing is downloaded or copied and pip
installs the wheel with --no-index. The test proves the wheel's copy is the one imported and that the test
extras (timm, onnx, pytest) are absent.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import resbone

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _build_wheel(out: Path) -> Path:
    """pip wheel of a copy of the files a wheel is built from, so no other file of the checkout can slip in
    and the checkout gets no build/ folder; offline (no build isolation, no index)."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "resbone", src / "resbone", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(out), str(src)], check=True, cwd=out)
    (wheel,) = out.glob("resbone-*.whl")
    return wheel


def _runtime_closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions the requirements need, transitively, with the extras they ask for
    (torch's `cuda-toolkit[cublas, ...]`) and none of resbone's own."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]  # (requirement, the extra of its parent that asks for it)
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        for wanted in ("", *req.extras):
            if (key, wanted) not in seen:
                seen.add((key, wanted))
                found[key] = dist = metadata.distribution(req.name)
                todo += [(Requirement(r), wanted) for r in dist.requires or ()]
    return list(found.values())


def _link_runtime(dists: list[metadata.Distribution], folder: Path) -> None:
    """Each distribution's top-level files and its .dist-info, linked (not copied) into `folder`."""
    folder.mkdir()
    for dist in dists:
        root = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if (root / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(root / top)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(run, venv folder, work folder): `run(*argv)` runs a command of the fresh venv in the work folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp / "dist")
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(f"{wheel.name.split('-py')[0]}.dist-info/METADATA").decode()
    requirements = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    _link_runtime(_runtime_closure(requirements), tmp / "runtime")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "resbone_runtime_deps.pth").write_text(f"{tmp / 'runtime'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "OMP_WAIT_POLICY"}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # pip of this interpreter installs into the new venv (--python); --no-index: the dependencies are there
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--quiet",
                    str(wheel)], check=True, env=env, cwd=tmp)
    work = tmp / "work"
    work.mkdir()

    def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    return run, env_dir, work, wheel


_PROBE = """
import importlib.metadata, importlib.util, json, os, sys
import resbone
heavy = [m for m in ('torch', 'yacs') if m in sys.modules]
absent = [m for m in ('timm', 'onnx', 'onnxruntime', 'pytest') if importlib.util.find_spec(m) is None]
dist = importlib.metadata.distribution('resbone')
finders = [type(f).__module__ for f in sys.meta_path]  # an editable install adds its own finder here
print(json.dumps(dict(file=resbone.__file__, version=resbone.__version__, path=sys.path, heavy=heavy, absent=absent,
                      omp=os.environ.get('OMP_WAIT_POLICY'), dist=str(dist.locate_file('')),
                      dist_version=dist.version, finders=finders)))
"""


def test_the_wheel_is_what_runs(installed):
    run, env_dir, _, wheel = installed
    probe = json.loads(run(str(env_dir / "bin" / "python"), "-c", _PROBE).stdout)
    site = str(env_dir.resolve())
    assert Path(probe["file"]).resolve().is_relative_to(site), probe["file"]  # not the checkout, not editable
    assert Path(probe["dist"]).resolve().is_relative_to(site)
    assert not [p for p in probe["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    assert not [f for f in probe["finders"] if "editable" in f], probe["finders"]
    # one version: the checkout's resbone.__version__ is what the wheel's metadata and its module say
    assert probe["version"] == probe["dist_version"] == wheel.name.split("-")[1] == resbone.__version__
    # only the runtime dependencies: the test extras are not importable; importing changes nothing
    assert probe["absent"] == ["timm", "onnx", "onnxruntime", "pytest"]
    assert probe["omp"] is None and probe["heavy"] == []


_PATHS = "import sys, resbone; print('\\n'.join(resbone.find_config(name) for name in sys.argv[1:]))"


def test_commands_from_outside_the_checkout(installed):
    run, env_dir, work, wheel = installed
    assert run("resbone", "--version").stdout.strip() == f"resbone {wheel.name.split('-')[1]}"
    names = run(str(env_dir / "bin" / "python"), "-m", "resbone", "configs").stdout.split()
    assert "fcos/shapes_R_18_FPN" in names
    paths = run(str(env_dir / "bin" / "python"), "-c", _PATHS, *names).stdout.split()
    assert len(paths) == len(names)
    for path in paths:  # every shipped config is a file of the installed package
        assert Path(path).is_file() and Path(path).resolve().is_relative_to(env_dir.resolve()), path
    assert "total params: 11,689,512" in run("resbone", "summary", "resnet18").stdout  # torchvision's resnet18


TINY = ["MODEL.DEVICE", "cpu", "DATASETS.ROOT", "data", "DATASETS.SHAPES.NUM_TRAIN", "4", "DATASETS.SHAPES.NUM_VAL",
        "2", "DATASETS.SHAPES.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "MODEL.FCOS.NUM_CONVS", "1",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.PROGRESS_BAR", "False", "TEST.IMS_PER_BATCH", "2",
        "OUTPUT_DIR", "run"]

# the other commands in one process of the venv's python (each `resbone` start pays torch's import)
_MORE = """
import os, runpy, sys, torch, torchvision
from resbone.cli import main
opts, sys.argv = sys.argv[1:], ["resbone", "--version"]
try:
    runpy.run_module("resbone", run_name="__main__")  # python -m resbone --version
except SystemExit as exit:
    assert exit.code == 0
assert main(["list", "resnet1*"]) == 0
assert main(["data", "shapes", "--out", "gen", "--num-train", "2", "--num-val", "1", "--size", "32"]) == 0
assert main(["eval", "fcos/shapes_R_18_FPN.yaml", "--weights", "run/model_final.pth", *opts]) == 0
image = os.path.join("gen", "val", "000001.png")
assert main(["predict", "fcos/shapes_R_18_FPN", "--weights", "run/model_final.pth", image, "--out", "pred",
             "--opts", *opts]) == 0
torch.save(torchvision.models.resnet18().state_dict(), "tv.pth")
assert main(["convert", "tv.pth", "timm.safetensors", "--to", "timm", "--arch", "resnet18"]) == 0
print("export:", main(["export", "resnet18", "r18.onnx"]))
"""


def test_train_and_the_other_commands_on_a_shipped_config(installed):
    run, env_dir, work, _ = installed
    trained = run("resbone", "train", "fcos/shapes_R_18_FPN", *TINY)
    assert "shapes_val: AP " in trained.stdout
    assert (work / "run" / "model_final.pth").is_file()
    more = run(str(env_dir / "bin" / "python"), "-c", _MORE, *TINY)
    assert more.stdout.startswith(f"resbone {resbone.__version__}\n")
    assert "resnet18" in more.stdout.split() and more.stdout.count("shapes_val: AP ") == 1
    assert (work / "pred" / "000001.png").is_file() and (work / "timm.safetensors").is_file()
    # ONNX is the deploy extra, absent here: the error names it
    assert "export: 2" in more.stdout and "pip install 'resbone[deploy]'" in more.stderr, more.stderr
